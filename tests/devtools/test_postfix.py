"""The private Postfix: a parallel burst through its pipe all arrives; exit 75 defers, exit 1 bounces."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

from devtools.pipeuser import ensure_pipe_user
from devtools.postfix import PIPE_USER, Delivery, Postfix

# Stores each message in OUT/<pid>.eml and its start/end times beside it. The recipient's
# local part picks the outcome: tempfail@ exits 75 (EX_TEMPFAIL), broken@ exits 1.
_SCRIPT = """\
#!/bin/sh
case "$1" in
  tempfail@*) echo "try again later"; exit 75;;
  broken@*) echo "no such thing"; exit 1;;
esac
date +%s.%N > "{out}/$$.start"
cat > "{out}/$$.tmp"
sleep 0.3
mv "{out}/$$.tmp" "{out}/$$.eml"
date +%s.%N > "{out}/$$.end"
"""


def message(n: int, to: str = "support@example.test") -> bytes:
    return (f"From: customer{n}@customer.test\r\nTo: {to}\r\nSubject: Request {n}\r\n"
            f"Message-ID: <req{n}@customer.test>\r\n\r\nPlease help, number {n}.\r\n").encode()


def pipe_to_files(server_dir: Path) -> tuple[list[str], Path]:
    """A pipe argv that runs the script above as the pipe user, and its output directory."""
    out = server_dir / "out"
    out.mkdir()
    # The account may not exist yet: only starting a Postfix creates it, and that comes later.
    ensure_pipe_user()
    user = pwd.getpwnam(PIPE_USER)
    os.chown(out, user.pw_uid, user.pw_gid)
    script = server_dir / "deliver.sh"
    script.write_text(_SCRIPT.format(out=out))
    script.chmod(0o755)
    return ["/bin/sh", str(script), "${recipient}"], out


def max_overlap(out: Path) -> int:
    """The most deliveries that were running at one moment."""
    spans = [(float(start.read_text()), float(start.with_suffix(".end").read_text()))
             for start in out.glob("*.start")]
    return max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)


def test_a_parallel_burst_is_piped_concurrently_and_all_sent(
    postfix_factory: Callable[..., Postfix], server_dir: Path,
) -> None:
    argv, out = pipe_to_files(server_dir)
    postfix = postfix_factory(argv)
    burst = [message(n) for n in range(10)]
    queue_ids = postfix.send(burst, parallel=True)
    postfix.wait_idle(timeout=30)
    assert sorted(path.read_bytes().split(b"\n\nPlease")[-1] for path in out.glob("*.eml")) == \
        sorted(raw.replace(b"\r\n", b"\n").split(b"\n\nPlease")[-1] for raw in burst)
    statuses = postfix.delivery_statuses()
    assert {d.queue_id: d.status for d in statuses} == dict.fromkeys(queue_ids, "sent")
    assert all(d.recipient == "support@example.test" for d in statuses)
    assert not [line for line in postfix.log_lines() if "status=bounced" in line]
    assert max_overlap(out) >= 2, "the pipe deliveries ran one at a time"


def test_exit_75_defers_and_exit_1_bounces(postfix_factory: Callable[..., Postfix], server_dir: Path) -> None:
    argv, _ = pipe_to_files(server_dir)
    postfix = postfix_factory(argv)
    tempfail, broken = postfix.send([message(1, "tempfail@example.test"),
                                     message(2, "broken@example.test")])
    statuses = postfix.wait_statuses([tempfail, broken], timeout=30)
    assert statuses[tempfail].status == "deferred"
    assert "try again later" in statuses[tempfail].detail
    assert statuses[broken].status == "bounced"
    assert "status 1" in statuses[broken].detail
    # The deferred message waits in the queue for its retry; the bounced one is gone. The queue may
    # also hold Postfix's own bounce notice (a new queue id) for a moment: only ours are compared.
    queued = {entry["queue_id"] for entry in postfix.queue()}
    assert (tempfail in queued, broken in queued) == (True, False)


def test_the_pipe_user_runs_the_checkouts_ticketd(pipe_python: Path) -> None:
    done = subprocess.run(["runuser", "-u", PIPE_USER, "--", str(pipe_python), "-c",
                           "import sys, ticketd.daemon as d; print(d.__file__, sys.executable)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    module, executable = done.stdout.split()
    assert module.startswith(str(pipe_python.parent / "code"))
    assert not executable.startswith("/root")


def test_delivery_lines_are_parsed() -> None:
    line = ("Dec 01 21:04:18 mta postfix/pipe[11088]: CD00C20CC67: to=<support@example.test>, "
            "orig_to=<help@example.test>, relay=ticketd, delay=0.04, delays=0.01/0.01/0/0.01, "
            "dsn=5.3.0, status=bounced (Command died with status 2: \"/bin/sh\")")
    postfix = Postfix(Path("/nonexistent"), ["/bin/true"])
    postfix.log_lines = lambda: [line, "unrelated"]  # type: ignore[method-assign]
    assert postfix.delivery_statuses() == [Delivery(
        "CD00C20CC67", "support@example.test", "ticketd", "bounced",
        'Command died with status 2: "/bin/sh"')]
