"""Signed VERP return addresses: a bounce proves it answers our mail by the address it was sent to."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from ticketd.daemon.tokens import LOCAL_MAX as LOCAL_MAX, b32, header_addresses, sign
from ticketd.daemon.tokens import check_base as _check_base

# 10 bytes of the Message-ID's hash name the message, 10 bytes of HMAC-SHA256 sign it: 80 bits
# each, 16 base32 characters each (10 bytes encode without padding). Lower-case base32, never
# base64: MTAs may fold the case of a local part (RFC 5321 2.4 lets them), and base32 survives it.
KEY_BYTES = MAC_BYTES = 10
TOKEN_CHARS = 32
DELIMITER = "+"  # the MTA's recipient delimiter: local+anything@domain reaches local@domain
# Where an MTA leaves the envelope recipient of a delivered message. MTAs send a bounce to the
# original MAIL FROM, so for a genuine DSN one of these holds our signed return address.
ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "to")

_TOKEN = re.compile(r"^[a-z2-7]{%d}$" % TOKEN_CHARS)
_CONTEXT = b"ticketd-verp-1\0"  # domain separation: this key signs nothing else


def message_key(message_id: str) -> str:
    """The short name of an outbound message in its return address (lower-case base32)."""
    digest = hashlib.sha256(message_id.strip().encode("utf-8", "surrogateescape")).digest()
    return b32(digest[:KEY_BYTES])


def envelope_sender(base: str, message_id: str, secret: bytes) -> str:
    """``local+TOKEN@domain`` of ``base`` for the message ``message_id``, signed with ``secret``."""
    problem = check_base(base)
    if problem:
        raise ValueError(problem)
    local, _, domain = base.rpartition("@")
    key = message_key(message_id)
    return f"{local}{DELIMITER}{key}{_mac(key, secret)}@{domain}"


def verify(address: str, base: str, secret: bytes) -> str | None:
    """The message key a return address of ``base`` carries if its signature holds, else None."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base_local, _, base_domain = base.rpartition("@")
    if domain.lower() != base_domain.lower() or not local.lower().startswith(base_local.lower() + DELIMITER):
        return None
    token = local[len(base_local) + len(DELIMITER):].lower()
    if not _TOKEN.match(token):
        return None
    key, mac = token[:TOKEN_CHARS // 2], token[TOKEN_CHARS // 2:]
    return key if hmac.compare_digest(mac, _mac(key, secret)) else None


def check_base(base: str) -> str:
    """What keeps ``base`` from carrying a token ("" when nothing does)."""
    return _check_base(base, len(DELIMITER) + TOKEN_CHARS, f"{DELIMITER}<{TOKEN_CHARS}-character token>")


def envelope_recipients(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The addresses in the headers where MTAs record whom a message was delivered to, lower case."""
    return header_addresses(headers, ENVELOPE_HEADERS)


def proof(headers: Iterable[tuple[str, str]], base: str, secret: bytes | None, message_id: str) -> tuple[bool, str]:
    """Whether a bounce was sent to the signed return address of ``message_id``, and why (one line).

    A valid token is not enough: it must name the message the bounce cites, or anyone who got
    one of our messages could reuse its return address to silence someone else.
    """
    if secret is None:
        return False, "no bounce secret configured (smtp.bounce_secret_file), so no bounce is proven"
    keys = [k for k in (verify(a, base, secret) for a in envelope_recipients(headers)) if k]
    if not keys:
        return False, "not addressed to a signed return address of ours"
    if message_key(message_id) not in keys:
        return False, "its signed return address belongs to another of our messages"
    return True, "addressed to the signed return address of the bounced message"


def _mac(key: str, secret: bytes) -> str:
    return sign(secret, _CONTEXT, key, MAC_BYTES)
