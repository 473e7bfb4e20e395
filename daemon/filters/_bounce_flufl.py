"""flufl.bounce's detectors, one at a time: which addresses a non-standard bounce names."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from email.message import Message
from functools import cache
from typing import Any

from ticketd.daemon.filters._bounce_report import plain_address

log = logging.getLogger("ticketd.bounce")


def flufl_failures(msg: Message) -> tuple[dict[str, bool], str]:
    """The first flufl.bounce detector that finds a valid address: {address: permanent}, its name.

    The detectors run one at a time, in flufl's order, rather than through all_failures(): that
    stops at the first detector that raises (Yale does on a message without From, Yahoo and Sina
    on an 8-bit From), and it does not say which detector spoke.
    """
    detectors = _flufl_detectors()
    if not detectors:  # pragma: no cover - flufl.bounce moved its list
        from flufl.bounce import all_failures

        try:
            temporary, permanent = all_failures(msg)
        except Exception:  # noqa: BLE001 - flufl may raise anything on odd mail
            return {}, ""
        found = _flufl_found(temporary, permanent)
        return found, "all_failures" if found else ""
    for detector in detectors:
        try:
            temporary, permanent = detector().process(msg)
        except Exception as exc:  # noqa: BLE001 - flufl's detectors trust the mail more than we can
            log.debug("bounce: flufl detector %s raised %s", detector.__name__, type(exc).__name__)
            continue
        found = _flufl_found(temporary, permanent)
        if found:
            return found, detector.__name__
    return {}, ""


@cache
def _flufl_detectors() -> tuple[Any, ...]:
    """flufl.bounce's detector classes, imported with the first mail that looks like a bounce.

    Importing flufl.bounce compiles its patterns, ~20 ms at every start; ordinary mail is told
    from a bounce by its headers alone and never needs them.
    """
    try:  # flufl.bounce names its detectors only in a private list; without it we fall back to all_failures
        from flufl.bounce._scan import _DETECTORS
    except ImportError:  # pragma: no cover - a later flufl.bounce may move it
        return ()
    return tuple(_DETECTORS)


def _flufl_found(temporary: Iterable[bytes | str], permanent: Iterable[bytes | str]) -> dict[str, bool]:
    found = {a: False for a in _valid_addresses(temporary)}
    found.update({a: True for a in _valid_addresses(permanent)})
    return found


def _valid_addresses(values: Iterable[bytes | str]) -> list[str]:
    out = []
    for value in values:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        address = plain_address(text)
        if address:
            out.append(address)
    return sorted(out)
