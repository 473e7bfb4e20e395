"""The relayed reply as built: support address, thread, attachments, hostile parts."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from ticketd.daemon.parsers.model import Attachment
from ticketd.daemon.relay import Thread, relay_draft
from tests.support.desk import ALICE, ANN, config


def test_a_relayed_reply_survives_hostile_attachments_and_undecodable_text(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    agent = cfg.team.agent_by_address(ALICE)
    parts = (Attachment("..\\\\..\\\\etc/passwd", "text/plain; charset=utf-8", b"x"),
             Attachment("r\u00e9sum\u00e9.pdf", "application/pdf", b"%PDF"),
             Attachment("evil", "multipart/mixed", b"--b"), Attachment("", "no type at all", b"?"))
    draft = relay_draft(cfg, agent, 7, "Subject\r\nBcc: x@evil.example", (ANN,), ("cc@example.org",),
                        "Fixed.\udcff", parts, Thread("<c1@example.org>", ("<c1@example.org>",)))
    message = message_from_bytes(draft.raw, policy=policy.default)
    assert message["From"].addresses[0].addr_spec == cfg.smtp.from_address and ALICE not in draft.raw.decode()
    assert message["Bcc"] is None and "[#7]" in str(message["Subject"])
    assert (message["To"], message["Cc"], message["In-Reply-To"]) == (ANN, "cc@example.org", "<c1@example.org>")
    assert draft.recipients == (ANN, "cc@example.org") and not draft.automatic
    names = [(p.get_filename(), p.get_content_type()) for p in message.iter_attachments()]
    assert names == [("passwd", "text/plain"), ("r\u00e9sum\u00e9.pdf", "application/pdf"),
                     ("evil", "application/octet-stream"), ("attachment", "application/octet-stream")]
    assert "Fixed." in message.get_body(("plain",)).get_content()
