"""Outbox rows, an SMTP config for the sink, and another process's hold on the write lock."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from itertools import count
from pathlib import Path

from ticketd.daemon.config import SmtpConfig
from ticketd.daemon.outbox import OutboxSender
from ticketd.daemon.turn import WriteTurn
from ticketd.storage.models import OutboundMessage
from tests.support.locks import OtherConnection

_numbers = count(1)
RAW = b"From: support@example.test\r\nTo: x@example.test\r\nSubject: Ticket [#1]\r\n\r\nHello.\r\n"
START = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def smtp_config(port: int, timeout: float = 5.0) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", username=None, password=None,
                      verify_tls=False, ca_file=None, timeout=timeout, from_address="support@example.test",
                      envelope_from="support@example.test", retry_base=30.0, retry_max=600.0,
                      give_up_after=86400.0)


def outbox(port: int, lanes: int = 1, write_turn: WriteTurn | None = None, timeout: float = 5.0) -> OutboxSender:
    """A sender for the sink on ``port`` whose clock stands at START, when the rows are due.

    Each is an instance of its own, as a process is (a restart included): its claims are its own.
    """
    return OutboxSender(smtp_config(port, timeout), clock=lambda: START, write_turn=write_turn, lanes=lanes,
                        instance=f"test-sender-{next(_numbers)}")


async def row(to: str, created: datetime = START) -> OutboundMessage:
    return await OutboundMessage.create(
        kind="ack", message_id=f"<o{next(_numbers)}@example.test>", mail_from="support@example.test",
        recipients=[to], recipient=to.lower(), raw_bytes=RAW, next_try_at=created, created_at=created)


class OtherWriter:
    """Another process's write transaction on the database (a `ticketd ingest`, say).

    ``hold()`` may be called from the SMTP sink's thread (its on_message hook runs before the
    sink answers 250), so a test can make the database busy exactly between DATA and our commit.
    """

    def __init__(self, path: Path) -> None:
        self._db = OtherConnection(path, wait=0)
        self._lock = threading.Lock()
        self.holding = False
        self.held = 0  # times hold() took the lock

    def hold(self, once: bool = False) -> None:
        """Take the write lock (``once``: unless it was taken before)."""
        with self._lock:
            if not self.holding and not (once and self.held):
                self._db.lock()
                self.holding = True
                self.held += 1

    def release(self) -> None:
        with self._lock:
            if self.holding:
                self._db.rollback()
                self.holding = False

    def statuses(self) -> list[str]:
        """What another reader sees now (readers are not blocked by the writer)."""
        with self._lock:
            return [status for (status,) in self._db.rows("SELECT status FROM outbound_message ORDER BY id")]

    def close(self) -> None:
        self.release()
        self._db.close()
