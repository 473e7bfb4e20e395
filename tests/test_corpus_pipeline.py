"""Every real-world message in ../shared/corpus ends as a ticket article or a recorded reason."""

from __future__ import annotations

from pathlib import Path

from ticketd.daemon.config import load_config
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.responders import build_responders
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.models import Article, InboundMessage, InboundStatus
from tests.support.daemon import write_config

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
EXPECTED_OUTPUT = {".yml", ".json", ".xml", ".md", ".txt", ".bin", ".out"}
NOT_MAIL = {"COPYING", ".gitattributes", "README", "LICENSE"}


def corpus_messages() -> list[Path]:
    files = [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.name not in NOT_MAIL]
    inputs = [p for p in files if p.suffix.lower() not in EXPECTED_OUTPUT
              or "emails" in p.parts and p.suffix == ".txt"]  # reply-parser bodies are inputs too
    return [p for p in inputs if "_decoded" not in p.name]


async def test_every_corpus_message_becomes_an_article_or_a_recorded_reason(tmp_path: Path) -> None:
    paths = corpus_messages()
    assert len(paths) > 400, f"corpus missing or incomplete at {CORPUS}"
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "support@example.test")]))
    async with database(config.database_url):
        processor = Processor(config, build_responders(config))
        rows = [await intake.store_one(intake.Incoming(raw=p.read_bytes(), size=p.stat().st_size),
                                       config.max_message_bytes) for p in paths]
        for start in range(0, len(rows), 50):
            await processor.process(rows[start:start + 50], None)
        stored = await InboundMessage.all().only("id", "status", "reason", "message_id")
        articles = set(await Article.all().values_list("inbound_id", flat=True))
    by_id = {row.id: row for row in stored}
    unaccounted = []
    for path, row in zip(paths, rows):
        final = by_id[row.id]
        if final.status == InboundStatus.PROCESSED and row.id in articles:
            continue
        if final.status == InboundStatus.DUPLICATE or (final.status == InboundStatus.QUARANTINED and final.reason):
            continue
        unaccounted.append(f"{path.relative_to(CORPUS)}: {final.status} {final.reason!r}")
    assert not unaccounted, "\n".join(unaccounted)
    quarantined = [(p.relative_to(CORPUS), by_id[r.id].reason) for p, r in zip(paths, rows)
                   if by_id[r.id].status == InboundStatus.QUARANTINED]
    print(f"\n{len(paths)} corpus messages: {len(paths) - len(quarantined)} articles or duplicates, "
          f"{len(quarantined)} quarantined")
    for path, reason in quarantined:
        print(f"  {path}: {reason}")
    # The reply-parser folder holds bodies without headers: a recorded reason is right for them.
    # Bounces for mail we never sent are held by design (a bounce never opens a ticket).
    mail = [q for q in quarantined if q[0].parts[0] != "github-email-reply-parser"
            and not q[1].startswith("bounce for a message we did not send")]
    assert len(mail) <= len(paths) // 50, "more than 2 % of real-world mail quarantined"
