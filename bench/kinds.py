"""One builder per kind of generated message; each returns a Draft for the envelope."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import format_datetime

from bench import corpus, mime, oddities
from bench.compose import (Context, Conversation, Draft, alternative, english_text, fill,
                           html_of, local_text, multipart, text_part)
from bench.mime import Part
from bench.payloads import BUILDERS

ATTACHMENT_RANGE = (6 * 1024, 48 * 1024)  # decoded bytes per message; promised 5-50 KiB
BIG_RANGE = (110_000, 1_000_000)  # decoded bytes; promised 100 KiB-1 MiB
_QUOTE_LINES = 24


def _english(ctx: Context, extra: str = "") -> tuple[str, str]:
    topic = ctx.rng.choice(corpus.TOPICS)
    return fill(ctx.rng.choice(topic.subjects), ctx.rng), english_text(ctx, topic, extra)


def _latin_mode(ctx: Context) -> str:
    return "Q" if ctx.customer.lang in ("en", "de", "fr", "es") else "B"


def build_plain(ctx: Context) -> Draft:
    """text/plain, 7bit or quoted-printable UTF-8."""
    subject, text = _english(ctx)
    return Draft(subject, text_part(text), text, mode=_latin_mode(ctx))


def build_alternative(ctx: Context) -> Draft:
    """multipart/alternative: text and HTML."""
    subject, text = _english(ctx)
    return Draft(subject, alternative(ctx, text), text, mode=_latin_mode(ctx))


def build_html(ctx: Context) -> Draft:
    """text/html only."""
    subject, text = _english(ctx)
    body = text_part(html_of(text, ctx.customer.mailer), "utf-8", "quoted-printable", "html")
    return Draft(subject, body, text, mode=_latin_mode(ctx))


# (charset, languages, transfer encodings, RFC 2047 mode)
_CHARSET_PLANS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("iso-8859-1", ("de", "fr", "es"), ("quoted-printable", "8bit"), "Q"),
    ("windows-1252", ("en", "de"), ("quoted-printable",), "Q"),
    ("koi8-r", ("ru",), ("8bit", "base64"), "B"),
    ("iso-2022-jp", ("ja",), ("7bit",), "B"),
    ("gb2312", ("zh",), ("base64",), "B"),
    ("gb18030", ("zh",), ("base64",), "B"),
    ("utf-8", ("de", "fr", "es", "ru", "ja", "zh"), ("base64", "quoted-printable"), "B"),
)


def build_charset(ctx: Context) -> Draft:
    """A message in a legacy or non-Latin charset, subject and name RFC 2047-encoded."""
    rng = ctx.rng
    plans = [plan for plan in _CHARSET_PLANS if ctx.customer.lang in plan[1]]
    charset, _, encodings, mode = rng.choice(plans)
    subject, text = _local_subject_text(ctx, charset)
    encoding = rng.choice(encodings)
    if rng.random() < 0.3:
        body = alternative(ctx, text, charset, encoding)
    else:
        body = text_part(text, charset, encoding)
    return Draft(subject, body, text, variant=charset, charset=charset, mode=mode)


def _local_subject_text(ctx: Context, charset: str) -> tuple[str, str]:
    rng = ctx.rng
    if charset == "windows-1252":
        subject = fill(rng.choice(corpus.CP1252_SUBJECTS), rng)
        paragraphs = [fill(p, rng) for p in rng.sample(corpus.CP1252_PARAGRAPHS, 2)]
        text = f"{rng.choice(corpus.GREETINGS)}\n\n" + "\n\n".join(paragraphs) + \
            f"\n\n{rng.choice(corpus.CLOSINGS)}\n{ctx.customer.name}\n"
        return subject, text
    lang = corpus.LANGUAGES[ctx.customer.lang]
    return fill(rng.choice(lang.subjects), rng), local_text(ctx, lang)


def build_attachment(ctx: Context) -> Draft:
    """Text (or text+HTML) with one or two attachments of 5-50 KiB in all."""
    rng = ctx.rng
    total = rng.randint(*ATTACHMENT_RANGE)
    count = 1 if rng.random() < 0.75 else 2
    sizes = [total] if count == 1 else [total // 2 + total % 2, total // 2]
    kinds = [rng.choices(("pdf", "png", "csv", "txt"), weights=(35, 35, 20, 10))[0] for _ in sizes]
    return _with_attachments(ctx, list(zip(kinds, sizes)))


def build_big_attachment(ctx: Context) -> Draft:
    """Text with one attachment of 100 KiB-1 MiB."""
    rng = ctx.rng
    ext = rng.choices(("pdf", "png", "zip", "txt"), weights=(40, 25, 20, 15))[0]
    return _with_attachments(ctx, [(ext, rng.randint(*BIG_RANGE))])


def _with_attachments(ctx: Context, specs: list[tuple[str, int]]) -> Draft:
    rng = ctx.rng
    subject, text = _english(ctx, "Please find the file attached." if len(specs) == 1
                             else "Please find the files attached.")
    body = alternative(ctx, text) if rng.random() < 0.4 else text_part(text)
    parts = [body, *(attachment_part(ctx, ext, size) for ext, size in specs)]
    mixed = multipart(rng, "mixed", parts, ctx.customer.mailer)
    return Draft(subject, mixed, text, variant="+".join(ext for ext, _ in specs),
                 mode=_latin_mode(ctx))


def attachment_part(ctx: Context, ext: str, size: int) -> Part:
    """An attachment leaf of about ``size`` decoded bytes."""
    rng = ctx.rng
    content_type, build, is_text = BUILDERS[ext]
    data = build(rng, size)
    name = _attachment_name(ctx, ext)
    style = rng.choice(("2231", "2231", "2231-split", "2047"))
    disposition, name_param = mime.filename_params(name, style)
    if is_text:
        data = mime.crlf_bytes(data)
        content_type += "; charset=utf-8"
    return Part(
        [("Content-Type", f"{content_type}; {name_param}"),
         ("Content-Disposition", f"attachment; {disposition}"),
         ("Content-Transfer-Encoding", "base64")],
        mime.b64_body(data),
    )


def _attachment_name(ctx: Context, ext: str) -> str:
    rng = ctx.rng
    if ext in ("pdf", "png", "csv") and rng.random() < 0.35:
        lang = ctx.customer.lang
        if lang == "en":
            lang = rng.choice(("de", "fr", "ru", "ja"))
        names = [n for n in corpus.LANGUAGES[lang].attachment_names if n.endswith("." + ext)]
        if names:
            return rng.choice(names)
    names = [n for n in corpus.ATTACHMENT_NAMES_ASCII if n.endswith("." + ext)]
    return fill(rng.choice(names), rng) if names else f"archive-{rng.randint(1, 999)}.{ext}"


def build_reply(ctx: Context, conversation: Conversation) -> Draft:
    """A follow-up by the same customer, threaded to the conversation's latest message."""
    rng = ctx.rng
    customer = ctx.customer
    when = format_datetime(conversation.date.astimezone(customer.zone))
    quoted = "\n".join(f">{'' if line.startswith('>') else ' '}{line}".rstrip()
                       for line in conversation.quote.splitlines()[:_QUOTE_LINES])
    text = (f"{rng.choice(corpus.FOLLOW_UPS)}\n\n{customer.name}\n\n"
            f"On {when}, {customer.name} <{customer.email}> wrote:\n{quoted}\n")
    conversation.date = ctx.date
    body = alternative(ctx, text) if customer.mailer in ("outlook", "gmail") else text_part(text)
    subject = f"Re: {conversation.subject}"
    return Draft(subject, body, text, mode=_latin_mode(ctx), reply_to=conversation)


def build_odd(ctx: Context) -> Draft:
    """A deliberately malformed but readable message (see bench.oddities)."""
    subject, text = _english(ctx)
    return oddities.build(ctx, subject, text)


BUILDERS_BY_KIND: dict[str, Callable[[Context], Draft]] = {
    "plain": build_plain,
    "alternative": build_alternative,
    "html": build_html,
    "charset": build_charset,
    "attachment": build_attachment,
    "big-attachment": build_big_attachment,
    "odd-mime": build_odd,
}
