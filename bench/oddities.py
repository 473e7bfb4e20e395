"""Deliberately malformed but readable mail: the cases real mailboxes are full of."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.utils import format_datetime

from bench import corpus, mime
from bench.compose import Context, Draft, alternative, fill, local_text, text_part
from bench.mime import Headers, Part

VARIANTS: tuple[str, ...] = (
    "no-boundary-end",
    "bad-base64-padding",
    "undeclared-8bit",
    "unknown-charset",
    "multipart-no-boundary",
    "duplicate-headers",
    "overlong-header",
    "no-message-id",
)


def build(ctx: Context, subject: str, text: str) -> Draft:
    """One odd message; the variants take turns, so every one shows up in a short run."""
    variant = VARIANTS[ctx.kind_count % len(VARIANTS)]
    draft = _BUILDERS[variant](ctx, subject, text)
    draft.variant = variant
    return draft


def _no_boundary_end(ctx: Context, subject: str, text: str) -> Draft:
    """multipart/alternative whose closing delimiter never comes (a truncated send)."""
    body = alternative(ctx, text)
    body.close = False
    return Draft(subject, body, text)


def _bad_base64_padding(ctx: Context, subject: str, text: str) -> Draft:
    """A base64 text body whose final '=' padding was lost."""
    data = mime.crlf(text).encode("utf-8")
    if len(data) % 3 == 0:  # make sure there is padding to lose
        data += b"\r\n"
    encoded = mime.b64_body(data).rstrip(b"\r\n").rstrip(b"=") + b"\r\n"
    body = Part([("Content-Type", 'text/plain; charset="utf-8"'),
                 ("Content-Transfer-Encoding", "base64")], encoded)
    return Draft(subject, body, text)


def _raw_8bit(text: str) -> bytes:
    """What a careless mailer sends: Latin-1 if the text fits, else UTF-8; never declared."""
    try:
        return mime.crlf_bytes(text.encode("iso-8859-1"))
    except UnicodeEncodeError:
        return mime.crlf_bytes(text.encode("utf-8"))


def _undeclared_8bit(ctx: Context, subject: str, text: str) -> Draft:
    """No MIME headers at all; an 8-bit body and a raw UTF-8 subject."""
    lang = corpus.LANGUAGES[ctx.customer.lang if ctx.customer.lang in ("de", "fr", "es") else "de"]
    subject = fill(ctx.rng.choice(lang.subjects), ctx.rng)
    text = local_text(ctx, lang)
    body = Part([], _raw_8bit(text))
    raw_subject = subject.encode("utf-8")

    def fixup(headers: Headers) -> Headers:
        kept = [(k, v) for k, v in headers if k not in ("MIME-Version", "Content-Language")]
        return [(k, raw_subject if k == "Subject" else v) for k, v in kept]

    return Draft(subject, body, text, fixup=fixup)


def _unknown_charset(ctx: Context, subject: str, text: str) -> Draft:
    """A charset name nobody knows, in the body and in an encoded-word subject."""
    text += "\nViele Grüße aus Köln\n"
    body = Part([("Content-Type", 'text/plain; charset="x-unknown"'),
                 ("Content-Transfer-Encoding", "8bit")],
                _raw_8bit(text))
    subject = f"{subject} (Ärger)"
    encoded = mime.encode_words(subject, "iso-8859-1", "Q").replace("iso-8859-1", "x-unknown")

    def fixup(headers: Headers) -> Headers:
        return [(k, encoded if k == "Subject" else v) for k, v in headers]

    return Draft(subject, body, text, fixup=fixup)


def _multipart_no_boundary(ctx: Context, subject: str, text: str) -> Draft:
    """Content-Type multipart/mixed without the boundary parameter."""
    mark = f"----=_Part_{ctx.rng.getrandbits(32)}"
    inner = (f"--{mark}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n--{mark}--\n")
    body = Part([("Content-Type", "multipart/mixed")],
                mime.crlf_bytes(inner.encode("utf-8")))
    return Draft(subject, body, text)


def _duplicate_headers(ctx: Context, subject: str, text: str) -> Draft:
    """Subject, Date, To and Message-ID each appear twice."""
    later = format_datetime((ctx.date + timedelta(seconds=7)).astimezone(ctx.customer.zone))

    def fixup(headers: Headers) -> Headers:
        doubled: Headers = []
        for key, value in headers:
            doubled.append((key, value))
            if key in ("Subject", "To", "Message-ID"):
                doubled.append((key, value))
            if key == "Date":
                doubled.append((key, later))
        return doubled

    return Draft(subject, text_part(text), text, fixup=fixup)


def _overlong_header(ctx: Context, subject: str, text: str) -> Draft:
    """A subject folded over many lines and a header line far over 998 octets."""
    error = " ".join(f"at com.example.app.Module{ctx.rng.randint(1, 99)}.call(Module.java:"
                     f"{ctx.rng.randint(10, 900)})" for _ in range(8))
    long_subject = f"{subject} - java.lang.IllegalStateException: {error}"
    trace = "".join(f"{ctx.rng.getrandbits(64):016x}" for _ in range(100))  # 1600 chars, no space

    def fixup(headers: Headers) -> Headers:
        return [*headers, ("X-Correlation-Trace", trace)]

    return Draft(long_subject, text_part(text), text, fixup=fixup)


def _no_message_id(ctx: Context, subject: str, text: str) -> Draft:
    """No Message-ID header at all."""
    return Draft(subject, text_part(text), text, message_id="")


_BUILDERS: dict[str, Callable[[Context, str, str], Draft]] = {
    "no-boundary-end": _no_boundary_end,
    "bad-base64-padding": _bad_base64_padding,
    "undeclared-8bit": _undeclared_8bit,
    "unknown-charset": _unknown_charset,
    "multipart-no-boundary": _multipart_no_boundary,
    "duplicate-headers": _duplicate_headers,
    "overlong-header": _overlong_header,
    "no-message-id": _no_message_id,
}
