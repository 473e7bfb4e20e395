"""The shared commit of LMTP intake: sessions that wait together commit together, each hears of its own rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ticketd.daemon.config import load_config
from ticketd.daemon.lmtp_store import GroupCommit
from ticketd.daemon.pipeline import Processor
from ticketd.storage.db import database
from ticketd.storage.errors import is_temporary
from ticketd.storage.models import InboundMessage, InboundStatus, Mailbox
from tests.support.daemon import write_config
from tests.support.mail import simple


def _config(directory: Path) -> Path:
    path = write_config(directory, 10143, 2525, [("support", "support@example.test")])
    text = path.read_text()
    path.write_text(text[:text.index("[[mailboxes]]")] + '\n[[addresses]]\nname = "support"\n'
                    'address = "support@example.test"\n[[addresses]]\nname = "sales"\naddress = "sales@example.test"\n')
    return path


async def test_sessions_that_wait_for_the_turn_share_one_transaction(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    async with database(config.database_url):
        processor = Processor(config, responders=[])
        handed_on: list[tuple[str, InboundMessage]] = []
        store = GroupCommit(processor, handed_on.extend)
        store.start()
        raws = [simple(f"c{n}@example.org", f"Message {n}", f"<m{n}@example.org>") for n in range(10)]
        async with processor.write_turn.exclusive():  # the pipeline commits meanwhile
            sessions = [asyncio.create_task(store.store(raw, [("support", b"Delivered-To: x\r\n")]))
                        for raw in raws]
            await asyncio.sleep(0.2)
            assert not any(s.done() for s in sessions)  # nothing is answered before its commit
        results = await asyncio.gather(*sessions)
        two = await store.store(raws[0], [("support", b""), ("sales", b"")])  # one message, two mailboxes
        await store.close()
        assert (store.commits, store.messages) == (2, 11)
        assert [row.message_id for [row] in results] == [f"<m{n}@example.org>" for n in range(10)]
        assert [row.id for _, row in handed_on] == [row.id for [row] in results] + [r.id for r in two]
        stored = await InboundMessage.all().order_by("id").prefetch_related("source")
        assert [r.status for r in stored] == [InboundStatus.RECEIVED] * 12 and stored[0].uid is None
        assert stored[0].source.content == b"Delivered-To: x\r\n" + raws[0]
        boxes = {box.id: box.name for box in await Mailbox.all()}
        assert [boxes[r.mailbox_id] for r in stored[-2:]] == ["support", "sales"]  # type: ignore[attr-defined]


async def test_a_store_after_close_is_a_temporary_failure(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    async with database(config.database_url):
        store = GroupCommit(Processor(config, responders=[]), lambda rows: None)
        store.start()
        await store.close()
        with pytest.raises(ConnectionAbortedError) as refused:
            await store.store(b"Subject: x\r\n\r\nx\r\n", [("support", b"")])
        assert is_temporary(refused.value)  # so the session answers 451
