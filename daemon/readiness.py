"""What the running daemon tells systemd: READY once its parts are up, STATUS, RELOADING, STOPPING.

READY means "the service works", not "every server answered": it is sent once the database is
open, the LMTP listener (if any) is bound and every mailbox's first login has succeeded or
failed (its worker then retries with backoff). A mailbox that neither answers nor fails holds it
back for READY_WAIT seconds at most, well inside the unit's TimeoutStartSec, so a daemon whose
IMAP server is down is not killed at start-up; its STATUS says which mailboxes are not connected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ticketd.daemon.fetcher import MailboxWorker
from ticketd.daemon.outbox import OutboxSender
from ticketd.daemon.sdnotify import Notifier

log = logging.getLogger("ticketd.systemd")

READY_WAIT = 45.0  # below the unit's TimeoutStartSec=90, with room for the imports and the database


class ServiceState:
    """The daemon's side of the notifications, for one run of ``ticketd run``."""

    def __init__(self, notifier: Notifier, workers: list[MailboxWorker], sender: OutboxSender,
                 lmtp: str | None = None) -> None:
        self.notifier = notifier
        self.workers = workers
        self.sender = sender
        self.lmtp = lmtp
        self.ready = False
        self.stopped = False
        self.note = ""  # said before the status until the next good reload (a refused one)

    async def wait_until_up(self, stop: asyncio.Event, timeout: float = READY_WAIT) -> None:
        """Until every mailbox has had its first try, ``stop`` is set, or ``timeout`` has passed."""
        self.notifier.status(f"starting: logging in to {len(self.workers)} mailbox(es)")
        tried = asyncio.ensure_future(asyncio.gather(*(w.tried.wait() for w in self.workers)))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({tried, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tried.cancel()
            stopped.cancel()
        late = [w.config.name for w in self.workers if not w.tried.is_set()]
        if late and not stop.is_set():
            log.warning("mailbox(es) %s neither logged in nor failed within %.0f s; ready all the same",
                        ", ".join(late), timeout)

    def announce_ready(self) -> None:
        self.ready = True
        self.notifier.ready(self.status())

    def reload(self, reload: Callable[[], bool]) -> None:
        """SIGHUP: ``reload`` between RELOADING=1 and READY=1 (only these once READY was sent)."""
        if not self.ready:  # a reload during start-up: systemd is still waiting for the first READY
            reload()
            return
        self.notifier.reloading()
        done = False
        try:
            done = reload()
        finally:  # whatever happened, systemd must not be left waiting in "reloading"
            self.note = "" if done else "reload refused (see the journal), the running configuration stays; "
            self.notifier.ready(self.status())

    def stopping(self) -> None:
        self.ready, self.stopped = False, True
        self.notifier.stopping(self.status())

    def status(self) -> str:
        """One line for ``systemctl status``: e.g. "2 of 3 mailboxes connected; outbox: 5 sent, 0 failed"."""
        parts = []
        if self.workers:
            elsewhere = sum(not w.health.held for w in self.workers)  # leased by other instances (daemon.leases)
            parts.append(f"{sum(w.connected for w in self.workers)} of {len(self.workers)} mailboxes connected"
                         + (f" ({elsewhere} fetched by other instances)" if elsewhere else ""))
        if self.lmtp is not None:
            parts.append(f"LMTP on {self.lmtp}")
        totals = self.sender.totals
        parts.append(f"outbox: {totals.sent} sent, {totals.failed} failed")
        head = "stopping: finishing the messages in hand; " if self.stopped else self.note
        return head + "; ".join(parts)
