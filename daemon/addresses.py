"""Mail addresses as pure values: is it a well-formed addr-spec, its canonical form, is it ours."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

# Each class below is "these ASCII characters, or any non-ASCII one" (RFC 6532), written as the
# complement of the ASCII characters it refuses: a class spelled with a range up to \U0010ffff
# costs re ~10-30 ms to compile at every start, a negated ASCII class well under one.
# RFC 5322 3.2.3 atext: not a control, space, DEL or one of the specials ()<>[]:;@\,." ;
# controls are refused separately.
_ATEXT = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]'
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# A quoted local part without whitespace: a space in an address is how header junk gets in.
# qtext is printable ASCII but '"' and '\\' (RFC 5322 3.2.4), or non-ASCII.
_QUOTED = re.compile(r'"(?:[^\x00-\x20"\\\x7f]|\\[!-~])+"')
# A host label: letters, digits and inner hyphens (RFC 1035 2.3.1), or non-ASCII (an IDN as typed).
_LET_DIG = r"[^\x00-/:-@\[-`{-\x7f]"
_LET_DIG_HYP = r"[^\x00-,./:-@\[-`{-\x7f]"
_LABEL = rf"{_LET_DIG}(?:{_LET_DIG_HYP}{{0,61}}{_LET_DIG})?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_LITERAL = re.compile(r"\[[!-Z^-~]{1,253}\]")  # RFC 5321 4.1.3 address literal, loosely
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?.*\?=")
_QUOTED_PAIR = re.compile(r"\\(.)")
MAX_LOCAL_OCTETS = 64  # RFC 5321 4.5.3.1.1
MAX_ADDRESS_OCTETS = 254  # RFC 5321 4.5.3.1.3, less the angle brackets


def split(address: str) -> tuple[str, str]:
    """(local part, domain) at the last '@' (a quoted local part may hold one); domain "" when none."""
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, "")


def is_valid(address: str) -> bool:
    """A well-formed addr-spec local@domain: no whitespace, no controls, a host or an IP literal."""
    if not address.isprintable() or " " in address or len(address.encode("utf-8", "replace")) > MAX_ADDRESS_OCTETS:
        return False
    local, domain = split(address)
    if not domain or len(local.encode("utf-8", "replace")) > MAX_LOCAL_OCTETS:
        return False
    # RFC 2047 5(3): an encoded word is never part of an addr-spec; one here is a display name.
    if _ENCODED_WORD.search(local):
        return False
    return bool(_DOT_ATOM.fullmatch(local) or _QUOTED.fullmatch(local)) and (
        bool(_HOST.fullmatch(domain)) or _literal(domain) is not None
    )


def is_local_only(address: str) -> bool:
    """A mailbox without a domain ("MAILER-DAEMON"): readable, never answerable."""
    return "@" not in address and address.isprintable() and bool(_DOT_ATOM.fullmatch(address))


def normalize(address: str) -> str:
    """Canonical form for comparison: lower case, local part unquoted, IDN domain as ASCII,
    IP literal in its shortest form. Not for sending: the quoting is gone."""
    local, domain = split(address.strip())
    if len(local) > 1 and local.startswith('"') and local.endswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    local = local.lower()
    if not domain:
        return local
    return f"{local}@{_literal(domain) or _host(domain)}"


def local_part(address: str) -> str:
    """The normalized local part without its +tag: what a robot or one of our mailboxes is called."""
    return split(normalize(address))[0].split("+", 1)[0]


def is_own(address: str, own: frozenset[str]) -> bool:
    """True when ``address`` reaches one of ``own`` however it is written: quoted, any case,
    with a +tag, or at an IP literal with one of our local parts. Answering it would loop."""
    local, domain = split(normalize(address))
    if not domain:
        return False
    locals_, pairs = _own(own)
    base = local.split("+", 1)[0]
    if (local, domain) in pairs or (base, domain) in pairs:
        return True
    # An IP literal may be any of our hosts; we cannot tell which, so any of our names counts.
    return domain.startswith("[") and (local in locals_ or base in locals_)


@lru_cache(maxsize=8)
def _own(own: frozenset[str]) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    pairs = {split(normalize(address)) for address in own if "@" in address}
    return frozenset(local for local, _ in pairs), frozenset(pairs)


def _host(domain: str) -> str:
    host = domain.rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid IDN: compare it as written
        return host


def _literal(domain: str) -> str | None:
    """An address literal in canonical form ("[127.0.0.1]", "[ipv6:::1]"), None when not one."""
    if not _LITERAL.fullmatch(domain):
        return None
    inner = domain[1:-1]
    tag, colon, rest = inner.partition(":")
    try:
        if colon and tag.lower() == "ipv6":
            return f"[ipv6:{ipaddress.IPv6Address(rest).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        # RFC 5321 4.1.3 General-address-literal (a standardized tag and its text): kept as is.
        return f"[{inner.lower()}]" if colon and tag.isalnum() else None
