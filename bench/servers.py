"""The benchmark's servers and ticketd configurations: Dovecot with a rawlog, IMAP or LMTP mode."""

from __future__ import annotations

import os
from pathlib import Path

from devtools.dovecot import Dovecot
from bench.leansink import LeanSink
from devtools.smtpsink import SmtpSink

USER, PASSWORD = "support@example.test", "secret"
MAILBOX = "support"  # the [[mailboxes]] / [[addresses]] name


class RawlogDovecot(Dovecot):
    """A private Dovecot that logs every IMAP command it reads, with its arrival time.

    Dovecot's ``rawlog_dir`` writes each post-login session to ``<time>.<pid>.in`` (what the
    client sent) and ``.out``, every line prefixed with the epoch time at which the imap
    process read or wrote it: how start-up is seen from outside the daemon.
    """

    @property
    def rawlog_dir(self) -> Path:
        return self.root / "rawlog"

    def _config(self) -> str:
        self.rawlog_dir.mkdir(parents=True, exist_ok=True)
        # Written by the imap process, which runs as the mail user (nobody, when we are root).
        self.rawlog_dir.chmod(0o1777)
        return super()._config() + f"protocol imap {{\n  rawlog_dir = {self.rawlog_dir}\n}}\n"


def continue_uids(dovecot: Dovecot, user: str, uidvalidity: int, next_uid: int) -> None:
    """Make the empty INBOX hand out UIDs from ``next_uid`` under ``uidvalidity``.

    Written as Dovecot's own ``dovecot-uidlist`` header before anything is delivered or
    indexed: the folder then looks like one that already held the pre-filled history.
    """
    inbox = dovecot.folder_path(user)
    if any(any((inbox / sub).iterdir()) for sub in ("new", "cur")):
        raise RuntimeError(f"{inbox} is not empty: its UIDs are already given")
    uidlist = inbox / "dovecot-uidlist"
    uidlist.write_text(f"3 V{uidvalidity} N{next_uid}\n")
    owner = inbox.stat()
    os.chown(uidlist, owner.st_uid, owner.st_gid)


def _common(database: Path | str, sink: SmtpSink | LeanSink) -> str:
    """``database``: the SQLite file, or a database URL (the suite's PostgreSQL run)."""
    url = database if isinstance(database, str) else f"sqlite:///{database.resolve()}"
    # The loop guard (3 automatic mails per recipient an hour by default) is lifted: generated
    # customers open several tickets within minutes, and each one must be acknowledged.
    return f"""\
[limits]
auto_replies_per_hour = 100000

[database]
url = "{url}"

[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
from = "Example Support <{USER}>"
"""


def write_imap_config(path: Path, database: Path | str, dovecot: Dovecot, sink: SmtpSink | LeanSink,
                      notify: bool = False, metrics_port: int | None = None) -> Path:
    """ticketd fetching from the private Dovecot's INBOX, flagging what it processed \\Seen.

    ``notify``: with an agent whom every new ticket notifies (issue 8's figure). ``metrics_port``:
    with [metrics] on 127.0.0.1 there (``--scrape``); without it no endpoint, as by default.
    """
    metrics = f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port is not None else ""
    path.write_text(_common(database, sink) + (_team(path.parent) if notify else "") + metrics + f"""
[[mailboxes]]
name = "{MAILBOX}"
address = "{USER}"
after_processing = "seen"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{USER}"
password = "{PASSWORD}"
folder = "INBOX"
""")
    return path


AGENT = "agent@example.test"  # notified of every new ticket with --notify


def signing_key(directory: Path) -> Path:
    """A fixed signing key (0600) for the benchmark's agents: nothing here is secret."""
    key = directory / "signing.key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    key.chmod(0o600)
    return key


def _team(directory: Path) -> str:
    key = signing_key(directory)
    return f"""
[signing]
secret_file = "{key}"

[[agents]]
name = "Bench Agent"
address = "{AGENT}"

[queues.{MAILBOX}]
notify = ["{AGENT}"]
"""


def write_lmtp_config(path: Path, database: Path | str, sink: SmtpSink | LeanSink, listen: str) -> Path:
    """ticketd listening for LMTP on ``listen`` (a socket path or HOST:PORT), no IMAP at all."""
    path.write_text(_common(database, sink) + f"""
[lmtp]
listen = "{listen}"

[[addresses]]
name = "{MAILBOX}"
address = "{USER}"
""")
    return path
