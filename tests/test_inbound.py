"""daemon.inbound: the statuses that ``ticketd inbound list --status`` offers."""

from __future__ import annotations

from ticketd.daemon.inbound import STATUSES
from ticketd.storage.models import InboundStatus


def test_the_status_choices_are_every_status_a_row_can_have() -> None:
    assert STATUSES == (InboundStatus.RECEIVED, *InboundStatus.FINAL)
