"""Authentication-Results (RFC 8601): did the trusted MTA see the From domain authenticated?

Anyone can write an Authentication-Results field, with any authserv-id, before sending. Only
the receiving MTA's own verdict counts, and an MTA prepends its field: the topmost field with
the trusted authserv-id is its verdict, whatever is below came from upstream (RFC 8601 5: the
MTA should also delete fields carrying its own id that arrive from outside; ask it to).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import islice

from ticketd.daemon.addresses import normalize

MAX_FIELDS = 20  # fields read, top first
# A longer field is not read at all: cut short, header.d=example.com.evil.test could read as
# header.d=example.com. Real ones stay well under 2 KB, several DKIM signatures included.
MAX_CHARS = 8192
HEAD_CHARS = 512  # where the authserv-id is looked for (after a comment, if any)

# Outside a comment: a quoted string, plain text, a special; inside one (RFC 5322 3.2.2): text,
# a quoted pair or a parenthesis, quotes being ordinary there.
_OUTSIDE = re.compile(r'"(?:[^"\\]|\\.)*"|[^"\\();]+|[();]|\\.?|"', re.DOTALL)
_INSIDE = re.compile(r"[^\\()]+|\\.?|[()]", re.DOTALL)
# method[/version]=result, reason=value, ptype.property=value (RFC 8601 2.2)
_PAIR = re.compile(r'\s*([A-Za-z0-9][A-Za-z0-9_.-]*(?:/[0-9]+)?)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')

Result = tuple[str, str, dict[str, str]]  # method, result, {"header.d": "example.com", ...}


def authentication_passed(auth_results_headers: Iterable[str], trusted_authserv_id: str, from_domain: str) -> bool:
    """Whether the topmost field of ``trusted_authserv_id`` says dkim=pass aligned with ``from_domain``
    (header.d is it or a parent of it) or dmarc=pass for it (header.from is it).

    The values must be as they arrived, top first, not RFC 2047-decoded: decoding would turn a
    quoted "=?utf-8?q?x=22;_dkim=3Dpass...?=" that the MTA copied from the envelope into syntax.
    """
    trusted, domain = trusted_authserv_id.strip().lower(), _domain(from_domain)
    if not trusted or "." not in domain:
        return False
    for value in islice(auth_results_headers, MAX_FIELDS):
        if _authserv_id(value) != trusted:
            continue
        parsed = parse(value) if len(value) <= MAX_CHARS else None
        if parsed is not None and parsed[0] != trusted:
            continue  # the quick look was misled by a cut; the whole field names another server
        return parsed is not None and any(_passes(result, domain) for result in parsed[1])
    return False


def parse(value: str) -> tuple[str, list[Result]] | None:
    """(authserv-id, results) of one field value, names and results lower-cased; None if unreadable.
    A result that does not parse is left out: it can only be missing, never made up."""
    segments = _segments(value)
    if segments is None or not segments[0].split():
        return None
    results = [result for result in map(_result, segments[1:]) if result is not None]
    return _unquote(segments[0].split()[0]).lower(), results


def _authserv_id(value: str) -> str | None:
    """A quick look at the authserv-id: a foreign field costs the scan of its first characters only."""
    head = _segments(value[:HEAD_CHARS], first_only=True)
    return _unquote(head[0].split()[0]).lower() if head and head[0].split() else None


def _passes(result: Result, domain: str) -> bool:
    method, outcome, props = result
    if outcome != "pass":
        return False
    if method == "dkim":
        signer = _domain(props.get("header.d", ""))
        # Relaxed alignment without a public-suffix list: a parent counts only if it has a dot.
        return signer == domain or ("." in signer and domain.endswith("." + signer))
    # header.from is required: with two From fields the MTA may have judged the other one.
    return method == "dmarc" and _domain(props.get("header.from", "")) == domain


def _segments(value: str, first_only: bool = False) -> list[str] | None:
    """The value without comments, split at the semicolons outside quoted strings; None if unbalanced."""
    segments: list[str] = []
    current: list[str] = []
    depth, pos = 0, 0
    while pos < len(value):
        token = (_INSIDE if depth else _OUTSIDE).match(value, pos)
        assert token is not None  # each pattern matches any character
        text, pos = token.group(), token.end()
        if text == "(":
            depth += 1
        elif text == ")":
            if depth == 0:
                return None
            depth -= 1
            current.append(" ")
        elif depth:
            continue
        elif text == ";":
            segments.append("".join(current))
            current = []
            if first_only:
                return segments
        elif text.startswith("\\") or text == '"':  # outside quotes and comments: malformed
            return None
        else:
            current.append(text)
    if depth:
        return None
    return [*segments, "".join(current)]


def _result(segment: str) -> Result | None:
    pairs: list[tuple[str, str]] = []
    pos = 0
    while (pair := _PAIR.match(segment, pos)) is not None:
        pairs.append((pair[1].lower(), _unquote(pair[2])))
        pos = pair.end()
    if segment[pos:].strip() or not pairs or "." in pairs[0][0] or \
            any(name != "reason" and "." not in name for name, _ in pairs[1:]):
        return None  # "none", or text that is not method=result [reason=...] [ptype.property=...]
    props = dict(pair for pair in pairs[1:] if "." in pair[0])
    if len(props) != sum("." in name for name, _ in pairs[1:]):
        return None  # a property twice: which one the MTA meant is unknowable
    return pairs[0][0].split("/")[0], pairs[0][1].lower(), props


def _unquote(text: str) -> str:
    if len(text) > 1 and text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _domain(text: str) -> str:
    """A domain (or the domain of @domain / local@domain) as addresses compare it."""
    return normalize("x@" + text.strip().rpartition("@")[2]).rpartition("@")[2]
