"""Building blocks shared by the mail generator: who writes, the text, the MIME parts."""

from __future__ import annotations

import html
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from bench import corpus, mime
from bench.corpus import Language
from bench.mime import Headers, Part


@dataclass(frozen=True)
class Customer:
    """A person who writes to support."""

    name: str
    email: str
    lang: str
    zone: timezone
    mailer: str
    company: str


@dataclass
class Conversation:
    """What a later reply needs to know about a conversation."""

    thread: int
    customer: Customer
    subject: str
    ids: list[str]  # Message-IDs of the conversation, oldest first
    quote: str  # text of the latest message, for quoting
    date: datetime


@dataclass
class Context:
    """Per-message inputs the kind builders share."""

    rng: random.Random
    customer: Customer
    date: datetime
    message_id: str
    to: str
    kind_count: int = 0  # messages of this kind generated before this one


@dataclass
class Draft:
    """What a kind builder returns: subject, MIME body and how to dress the headers."""

    subject: str
    body: Part
    text: str  # readable text, kept for quoting in replies
    variant: str = ""
    charset: str = "utf-8"  # for the subject and display name
    mode: str = "B"
    reply_to: Conversation | None = None
    fixup: Callable[[Headers], Headers] | None = None  # odd-MIME edits of the header block
    message_id: str | None = None  # overrides the context's ("" = none)


def fill(template: str, rng: random.Random) -> str:
    """Fill a corpus template's placeholders with plausible values."""
    seats = rng.randint(5, 120)
    values = {
        "invoice": f"INV-2024-{rng.randint(100, 99999):05d}",
        "code": f"E{rng.randint(100, 999)}",
        "time": f"{rng.randint(6, 17):02d}:{rng.choice((0, 10, 15, 30, 40, 45)):02d}",
        "month": rng.choice(corpus.MONTHS),
        "seats": str(seats),
        "seats2": str(max(1, seats - rng.randint(1, 5))),
        "reqid": f"req_{rng.getrandbits(64):016x}",
        "reqid2": f"req_{rng.getrandbits(64):016x}",
        "account": f"ACC-{rng.randint(10000, 99999)}",
        "amount": f"{rng.randint(20, 4000)},{rng.randint(0, 99):02d}",
    }
    return template.format_map(values)


def english_text(ctx: Context, topic: corpus.Topic, extra: str = "") -> str:
    """A support request in English: greeting, paragraphs, closing, signature."""
    rng = ctx.rng
    count = rng.choice((1, 2, 2, 3, 3, 4))
    chosen = rng.sample(topic.paragraphs, min(count, len(topic.paragraphs)))
    paragraphs = [fill(p, rng) for p in chosen]
    if extra:
        paragraphs.append(extra)
    body = "\n\n".join(paragraphs)
    return f"{rng.choice(corpus.GREETINGS)}\n\n{body}\n\n{rng.choice(corpus.CLOSINGS)}\n" \
           f"{_signature(ctx)}"


def _signature(ctx: Context) -> str:
    customer, rng = ctx.customer, ctx.rng
    lines = [customer.name]
    if rng.random() < 0.7:
        lines += ["", "--", f"{customer.name}", f"{customer.company}",
                  f"Phone: +1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"]
    if rng.random() < 0.2:
        lines += ["", _DISCLAIMER]
    if customer.mailer == "apple" and rng.random() < 0.4:
        lines += ["", "Sent from my iPhone"]
    return "\n".join(lines) + "\n"


_DISCLAIMER = (
    "CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential and may be\n"
    "privileged. If you are not the intended recipient, please notify the sender immediately\n"
    "and delete this e-mail. Any unauthorised copying, disclosure or distribution of the\n"
    "material in this e-mail is strictly forbidden. Please consider the environment before\n"
    "printing this e-mail."
)


def local_text(ctx: Context, lang: Language) -> str:
    """A support request in the customer's own language."""
    rng = ctx.rng
    count = rng.randint(1, min(3, len(lang.paragraphs)))
    body = "\n\n".join(fill(p, rng) for p in rng.sample(lang.paragraphs, count))
    return f"{lang.greeting}\n\n{body}\n\n{lang.closing}\n{ctx.customer.name}\n"


def html_of(text: str, mailer: str) -> str:
    """The HTML a mail client would send for ``text``."""
    blocks = [html.escape(block).replace("\n", "<br>\n") for block in text.split("\n\n")]
    if mailer == "outlook":
        paras = "\n".join(f'<p class="MsoNormal">{b}<o:p></o:p></p>' for b in blocks)
        return (
            '<html xmlns:o="urn:schemas-microsoft-com:office:office">\n<head>\n'
            '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
            "<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt; "
            'font-family:"Calibri",sans-serif;} --></style>\n</head>\n'
            f'<body lang="EN-US"><div class="WordSection1">\n{paras}\n</div></body></html>\n'
        )
    if mailer == "gmail":
        paras = "<div><br></div>".join(f"<div>{b}</div>" for b in blocks)
        return f'<div dir="ltr">{paras}</div>\n'
    paras = "\n".join(f"<p>{b}</p>" for b in blocks)
    return (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=UTF-8">'
        f"</head>\n<body>\n{paras}\n</body></html>\n"
    )


def text_part(text: str, charset: str = "utf-8", encoding: str | None = None,
              subtype: str = "plain") -> Part:
    """A text leaf in ``charset``; the transfer encoding is chosen from the content if not given."""
    data = text.encode(charset)
    if encoding is None:
        encoding = "7bit" if data.isascii() else "quoted-printable"
    body = {
        "7bit": lambda: mime.crlf_bytes(data),
        "8bit": lambda: mime.crlf_bytes(data),
        "quoted-printable": lambda: mime.qp_body(data),
        "base64": lambda: mime.b64_body(mime.crlf_bytes(data)),
    }[encoding]()
    headers: Headers = [
        ("Content-Type", f'text/{subtype}; charset="{charset}"'),
        ("Content-Transfer-Encoding", encoding),
    ]
    if subtype == "plain" and encoding in ("7bit", "8bit") and charset == "utf-8":
        headers[0] = ("Content-Type", f"text/plain; charset={charset}; format=flowed")
    return Part(headers, body + (b"" if body.endswith(b"\r\n") else b"\r\n"))


def boundary(rng: random.Random, style: str = "") -> str:
    """A multipart boundary in the style of a mail client."""
    bits = f"{rng.getrandbits(96):024x}"
    if style == "outlook":
        return f"_000_{bits.upper()}_"
    if style == "gmail":
        return f"000000000000{bits[:12]}"
    return f"------------{bits}"


def multipart(rng: random.Random, subtype: str, parts: list[Part], style: str = "") -> Part:
    """A multipart entity holding ``parts``."""
    mark = boundary(rng, style)
    headers: Headers = [("Content-Type", f'multipart/{subtype}; boundary="{mark}"')]
    preamble = b""
    if style == "thunderbird":
        preamble = b"This is a multi-part message in MIME format.\r\n"
    return Part(headers, parts=parts, boundary=mark, preamble=preamble)


def alternative(ctx: Context, text: str, charset: str = "utf-8",
                encoding: str | None = None) -> Part:
    """multipart/alternative with the text and its HTML rendering."""
    mailer = ctx.customer.mailer
    html_encoding = encoding or "quoted-printable"
    parts = [text_part(text, charset, encoding),
             text_part(html_of(text, mailer), charset, html_encoding, "html")]
    return multipart(ctx.rng, "alternative", parts, mailer)
