"""A database made by the previous release (0.1.0), kept in the repository as SQL.

The schema test needs the previous release's real schema and rows. It used to check the tag out
with ``git archive v0.1.0`` and run it, but a checkout need not carry tags or history (CI's does
not), so the database that release made is committed as a dump, ``tests/storage/data/ticketd-0.1.0.sql``.

``python -m tests.support.release`` remakes that dump from the tag: it runs the tagged code as it
was (its own top-level ``daemon`` and ``storage`` packages first on the path) and lets it make and
fill the database through its own pipeline, from the mails in ``MAILS``.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.support.daemon import PROJECT, write_config
from tests.support.mail import simple

RELEASE = "v0.1.0"
DUMP = PROJECT / "tests" / "storage" / "data" / "ticketd-0.1.0.sql"
MAILS = [simple("Ann <ann@example.org>", "Printer jams", "<p1@example.org>", body="It jams."),
         simple("Bob <bob@example.org>", "Invoice", "<i1@example.org>", body="Wrong total."),
         simple("Ann <ann@example.org>", "Re: Printer jams [#1]", "<p2@example.org>", body="Still jams.",
                extra="In-Reply-To: <p1@example.org>")]


def restore(path: Path) -> None:
    """Write the previous release's database to ``path``, from the committed dump."""
    with sqlite3.connect(path) as db:
        db.executescript(DUMP.read_text(encoding="utf-8"))
    db.close()


def release_tree(directory: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(PROJECT), "archive", RELEASE], capture_output=True, check=True)
    tree = directory / RELEASE
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def make_dump() -> str:
    with tempfile.TemporaryDirectory() as scratch:
        tree = release_tree(Path(scratch))
        work = Path(scratch) / "work"
        config = write_config(work, 10143, 10025, [("support", "support@example.test")])
        env = dict(os.environ, PYTHONPATH=str(tree))  # its packages before this checkout's installed ones
        for raw in MAILS:  # 0.1.0 installed its packages at the top level: `python -m daemon` is its ticketd
            subprocess.run([sys.executable, "-m", "daemon", "-c", str(config), "ingest"], input=raw,
                           check=True, timeout=120, env=env, cwd=tree)
        with sqlite3.connect(work / "ticketd.db") as db:
            return "\n".join(db.iterdump()) + "\n"


if __name__ == "__main__":
    DUMP.write_text(make_dump(), encoding="utf-8")
    print(f"wrote {DUMP.relative_to(PROJECT)}")
