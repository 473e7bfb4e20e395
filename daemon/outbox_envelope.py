"""MAIL FROM / RCPT TO for one outbound row, as the server at hand can take them."""

from __future__ import annotations

from dataclasses import dataclass

from ticketd.daemon.addresses import is_valid
from ticketd.daemon.outgoing import one_line


class EnvelopeError(ValueError):
    """An address cannot be written on the wire to this server."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(reason)
        self.role = role


@dataclass(frozen=True)
class Envelope:
    """MAIL FROM / RCPT TO as this server can take them."""

    sender: str
    recipients: tuple[str, ...]
    utf8: bool = False

    @property
    def options(self) -> list[str]:
        return ["SMTPUTF8"] if self.utf8 else []

    @property
    def encoding(self) -> str:
        return "utf-8" if self.utf8 else "ascii"


def plan_envelope(sender: str, recipients: list[str], smtputf8: bool) -> Envelope:
    """SMTPUTF8 (RFC 6531) when an address needs it and the server offers it; else plain ASCII.

    Without SMTPUTF8 a non-ASCII domain goes out IDNA-encoded (RFC 5890), which every server
    understands; a non-ASCII local part has no ASCII form, so it raises EnvelopeError.
    """
    # aiosmtplib reads a "<...>" out of whatever it is given (parseaddr), so junk around an
    # address would reach another recipient: only a well-formed addr-spec goes on the wire.
    for role, address in (("sender", sender), *(("recipient", r) for r in recipients)):
        if (address or role == "recipient") and not is_valid(address):
            raise EnvelopeError(role, f"{role} {one_line(address)} is not a well-formed address")
    if sender.isascii() and all(r.isascii() for r in recipients):
        return Envelope(sender, tuple(recipients))
    if smtputf8:
        return Envelope(sender, tuple(recipients), utf8=True)
    return Envelope(_ascii(sender, "sender"), tuple(_ascii(r, "recipient") for r in recipients))


def _ascii(address: str, role: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        raise EnvelopeError(role, f"{role} {one_line(address)} needs SMTPUTF8, which the server does not offer")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise EnvelopeError(role, f"{role} {one_line(address)}: the domain has no IDNA form") from None
