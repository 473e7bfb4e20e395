"""A help desk on a simulated clock: mail in through the real pipeline and database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ticketd.daemon import due
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.signing import reply_address
from ticketd.storage import intake, queries
from ticketd.storage.models import OutboundMessage
from tests.support.daemon import write_config
from tests.support.mail import simple

SUPPORT, ALICE, ANN = "support@example.test", "alice@example.test", "ann@example.org"
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def signing_and_alice(tmp_path: Path, groups: str = "") -> str:
    """The [signing] table (its key file written, 0600) and Alice as the one [[agents]] entry."""
    key = tmp_path / "signing.key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    key.chmod(0o600)
    return f"""
[signing]
secret_file = "{key}"

[[agents]]
name = "Alice Agent"
address = "{ALICE}"
{groups}"""


def config(tmp_path: Path, more: str = "") -> Config:
    extra = signing_and_alice(tmp_path) + f"""
[queues.support]
notify = ["{ALICE}"]
{more}"""
    return load_config(write_config(tmp_path, 10143, 2525, [("support", SUPPORT)], extra=extra))


class Desk:
    """Mail in through the pipeline, as the daemon would process it, at the clock's time."""

    def __init__(self, cfg: Config) -> None:
        self.cfg, self.clock = cfg, Clock()
        self.processor = Processor(cfg, clock=self.clock)
        self.n = 0

    async def mail(self, raw: bytes) -> Any:
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), self.cfg.max_message_bytes)
        [outcome] = await self.processor.process([row], self.cfg.mailboxes[0])
        return outcome

    async def customer(self, body: str, number: int | None = None, extra: str = "") -> Any:
        self.n += 1
        subject = f"Re: Help [#{number}]" if number else "Help"
        return await self.mail(simple(ANN, subject, f"<c{self.n}@example.org>", body=body, to=SUPPORT, extra=extra))

    async def agent(self, number: int | None, body: str, extra: str = "", sender: str = ALICE) -> Any:
        """``sender``'s mail to ticket ``number``'s signed address (None: to the plain support address)."""
        self.n += 1
        signing = self.cfg.team.signing
        to = reply_address(SUPPORT, number, signing.key, signing.reply_format) if number else SUPPORT
        subject = f"RE: [#{number}] Help" if number else "Note"
        return await self.mail(simple(f"Agent <{sender}>", subject, f"<a{self.n}@example.test>", body=body, to=to,
                                      extra=extra))

    async def ticket(self, number: int) -> dict[str, Any]:
        found = await queries.ticket_detail(number)
        assert found is not None
        return found

    async def sent(self, kind: str) -> int:
        return await OutboundMessage.filter(kind=kind).count()

    async def later(self, delta: timedelta) -> int:
        self.clock.now += delta
        return await due.run_due(self.processor)

    async def ticket_list(self) -> list[dict[str, Any]]:
        return await queries.ticket_list()
