"""Signed per-ticket reply addresses: a mail that reaches one proves its sender got the ticket's mail from us.

An agent is a configured address *and* a proof (DESIGN.md, "Who may do what"): a From header
alone proves nothing, since anyone can write one. The proof is the token in the address the
mail was sent to: HMAC-SHA256 over the ticket number with the site's signing key, which never
leaves the server. So a token of ticket 41 says nothing about ticket 42, and none can be made
without the key.

A token is a bearer proof for its ticket: only agents may see one. A reply address that reached
a customer (in an acknowledgement's Reply-To, say) would let him write as any agent on his own
ticket; threading customers' replies by address needs tokens of another context than this one.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from functools import lru_cache
from string import Formatter

from ticketd.daemon import tokens
from ticketd.daemon.addresses import MAX_ADDRESS_OCTETS, normalize
from ticketd.daemon.authresults import authentication_passed as authentication_passed  # the other proof
from ticketd.daemon.tokens import ATOM, LOCAL_MAX, header_addresses, sign

# 10 bytes (80 bits) of the MAC, 16 lower-case base32 characters. Forging one is guessing
# online: the key never leaves the server, each guess costs a delivered mail and a failure
# tells nothing, so 2^80 is far out of reach (64 would do; 80 costs 3 characters more). Base32
# in lower case, never base64: MTAs may fold the case of a local part (RFC 5321 2.4).
MAC_BYTES = 10
MAC_CHARS = 16
MIN_KEY_BYTES = 32  # `ticketd keygen` writes 64 hex characters
DEFAULT_FORMAT = "{local}+t{ticket}-{mac}@{domain}"
FIELDS = ("local", "ticket", "mac", "domain")
TICKET_DIGITS = 12  # the longest ticket number read back, and the one a reply address must fit
# Where the address a mail reached shows: the MTA's envelope records first (one per delivered
# copy, prepended above anything the sender wrote), then what the agent's client wrote.
REPLY_HEADERS = ("delivered-to", "x-original-to", "to", "cc")

_CONTEXT = b"ticketd-agent-reply-1\0"  # domain separation: VERP's is "ticketd-verp-1"


def reply_address(base_address: str, ticket_number: int, key: bytes, fmt: str = DEFAULT_FORMAT) -> str:
    """``base_address`` with the signed token of ticket ``ticket_number``, by ``fmt``."""
    if not isinstance(ticket_number, int) or isinstance(ticket_number, bool) or \
            not 0 < ticket_number < 10 ** TICKET_DIGITS:
        raise ValueError(f"a ticket number is a positive integer of at most {TICKET_DIGITS} digits, "
                         f"not {ticket_number!r}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a signing key has at least {MIN_KEY_BYTES} bytes")
    problem = check_format(fmt) or _check(base_address, fmt, len(str(ticket_number)))
    if problem:
        raise ValueError(problem)
    local, _, domain = base_address.rpartition("@")
    return fmt.format(local=local, ticket=ticket_number, mac=_mac(ticket_number, key), domain=domain)


def verify(address: str, key: bytes, fmt: str = DEFAULT_FORMAT) -> int | None:
    """The ticket number whose signed token ``address`` carries, or None (any base address)."""
    parsed = _parse(address, fmt)
    return parsed[1] if parsed is not None and _valid(parsed, key) else None


def signed_ticket(headers: Iterable[tuple[str, str]], own_base_addresses: Iterable[str], key: bytes,
                  fmt: str = DEFAULT_FORMAT) -> int | None:
    """The ticket of the first valid reply address of ours in To, Cc, Delivered-To or X-Original-To.

    ``headers`` are (name, value) pairs in message order, as ``ParsedMessage.headers``. A token
    counts only on one of ``own_base_addresses`` (the support addresses, in any case). At most
    ``tokens.MAX_FIELDS`` fields, ``MAX_HEADER`` characters each and ``MAX_ADDRESSES`` addresses
    are read, so a hostile header costs little.
    """
    bases = {normalize(base) for base in own_base_addresses}
    for address in header_addresses(headers, REPLY_HEADERS):
        parsed = _parse(address, fmt)
        if parsed is not None and normalize(parsed[0]) in bases and _valid(parsed, key):
            return parsed[1]
    return None


@lru_cache(maxsize=32)  # pure, and asked again for every reply address written
def check_format(fmt: str) -> str:
    """What is wrong with a reply-address format ("" when nothing is)."""
    example = f"a format like {DEFAULT_FORMAT!r}"
    try:
        pieces = list(Formatter().parse(fmt))
    except ValueError as exc:
        return f"{example} ({exc})"
    names = [name for _, name, _, _ in pieces if name is not None]
    if sorted(names) != sorted(FIELDS) or any(spec or conversion for _, _, spec, conversion in pieces):
        return f"{example}: each of {{local}}, {{ticket}}, {{mac}} and {{domain}} once, plain"
    if not fmt.startswith("{local}") or not fmt.endswith("@{domain}") or fmt.count("@") != 1:
        return f"{example}: {{local}} first, @{{domain}} last (the MTA delivers it to local@domain)"
    delimiter = pieces[1][0]
    if not delimiter or delimiter[0].isalnum():
        return f"{example}: {{local}} followed by the MTA's recipient delimiter (+ or -, as it is set up)"
    tag = _tag(fmt, "9" * TICKET_DIGITS, "a" * MAC_CHARS)
    if not ATOM.match("x" + tag) or len(tag) >= LOCAL_MAX:
        return f"{example}: plain atext characters between {{local}} and @, and few of them"
    return ""


def check_base(base_address: str, fmt: str = DEFAULT_FORMAT) -> str:
    """What keeps ``base_address`` from carrying the reply token of any ticket ("" when nothing does)."""
    return _check(base_address, fmt, TICKET_DIGITS)


@lru_cache(maxsize=256)
def _check(base: str, fmt: str, digits: int) -> str:
    shown = _tag(fmt, f"<{digits}-digit ticket>", f"<{MAC_CHARS}-character MAC>")
    return tokens.check_base(base, len(_tag(fmt, "9" * digits, "a" * MAC_CHARS)), shown)


def _tag(fmt: str, ticket: str, mac: str) -> str:
    """What ``fmt`` puts between the local part and the "@"."""
    return fmt.format(local="", ticket=ticket, mac=mac, domain="")[:-1]


def _parse(address: str, fmt: str) -> tuple[str, int, str] | None:
    """(base address, ticket number, MAC) of a reply address written by ``fmt``, else None."""
    text = address.strip().strip("<>")
    if len(text) > MAX_ADDRESS_OCTETS:
        return None
    match = _pattern(fmt).fullmatch(text)
    if match is None:
        return None
    return f"{match['local']}@{match['domain']}", int(match["ticket"]), match["mac"].lower()


def _valid(parsed: tuple[str, int, str], key: bytes) -> bool:
    return hmac.compare_digest(parsed[2], _mac(parsed[1], key))


def _mac(ticket: int, key: bytes) -> str:
    return sign(key, _CONTEXT, str(ticket), MAC_BYTES)


@lru_cache(maxsize=8)
def _pattern(fmt: str) -> re.Pattern[str]:
    groups = {"local": r"(?P<local>[^@\s]+)", "domain": r"(?P<domain>[^@\s]+)",
              # No leading zero: one spelling per ticket. Case-insensitive: MTAs fold it.
              "ticket": rf"(?P<ticket>[1-9][0-9]{{0,{TICKET_DIGITS - 1}}})",
              "mac": rf"(?P<mac>[a-z2-7]{{{MAC_CHARS}}})"}
    return re.compile("".join(re.escape(text) + (groups[name] if name else "")
                              for text, name, _, _ in Formatter().parse(fmt)), re.IGNORECASE)
