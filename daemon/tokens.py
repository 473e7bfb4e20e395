"""What signed addresses share (VERP return paths, per-ticket reply addresses): MAC, encoding, header scan."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable

LOCAL_MAX = 64  # RFC 5321 4.5.3.1.1
# Forged mail may carry huge address lists or thousands of fields: read this much and no more.
MAX_HEADER = 2000  # characters of each header value
MAX_FIELDS = 100  # header fields of the names asked for
MAX_ADDRESSES = 50  # distinct addresses returned

ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
# What cannot be part of an unquoted addr-spec. Splitting at these finds every address-like word
# in linear time; email.utils.getaddresses recurses once per "(" and raises RecursionError on
# a value of a few hundred of them. A false candidate costs one failed MAC check, nothing more.
_SEPARATORS = re.compile(r'[\s<>()\[\],;:"\\]+')


def sign(secret: bytes, context: bytes, text: str, nbytes: int) -> str:
    """The first ``nbytes`` of HMAC-SHA256(secret, context + text), in lower-case base32."""
    return b32(hmac.new(secret, context + text.encode("ascii"), hashlib.sha256).digest()[:nbytes])


def b32(data: bytes) -> str:
    """Lower-case base32 without padding: an MTA that folds the case of a local part keeps it."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def check_base(base: str, tag_chars: int, tag: str) -> str:
    """What keeps ``base`` from carrying a tag of ``tag_chars`` characters ("" when nothing does)."""
    local, at, domain = base.rpartition("@")
    if not at or not local or not domain:
        return f"an address like name@example.com (got {base!r})"
    if not ATOM.match(local):
        return f"a local part of plain atext characters, not quoted ({local!r})"
    if len(local) + tag_chars > LOCAL_MAX:
        return (f"a local part of at most {LOCAL_MAX - tag_chars} characters, so that "
                f"{local}{tag} fits RFC 5321's {LOCAL_MAX}")
    return ""


def header_addresses(headers: Iterable[tuple[str, str]], names: tuple[str, ...]) -> list[str]:
    """The address-like words of the fields called ``names`` (lower case), lower-cased, without repeats:
    those of the first name first, each name's in message order; bounded work on any input."""
    found: dict[str, list[str]] = {name: [] for name in names}
    fields = 0
    for name, value in headers:
        bucket = found.get(name.lower())
        if bucket is None:
            continue
        bucket += [word.lower() for word in _SEPARATORS.split(value[:MAX_HEADER]) if _address_like(word)]
        fields += 1
        if fields == MAX_FIELDS:
            break
    ordered = (address for name in names for address in found[name])
    return list(dict.fromkeys(ordered))[:MAX_ADDRESSES]


def _address_like(word: str) -> bool:
    local, at, domain = word.partition("@")
    return bool(at and local and domain) and "@" not in domain
