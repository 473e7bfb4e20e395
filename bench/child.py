"""The ticketd process under test: its command line, wall time, exit code and peak memory."""

from __future__ import annotations

import compileall
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from devtools._process import find_program

REPO = Path(__file__).resolve().parents[1]
_PAGE = os.sysconf("SC_PAGE_SIZE")
_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(")


@dataclass
class Child:
    """How the ticketd process went."""

    exit_code: int
    seconds: float
    max_rss: int  # bytes, largest single process (ru_maxrss of the child and its waited children)
    tree_rss: int  # bytes, largest sampled sum over the child's whole process tree
    started_at: float  # time.time() just before the spawn: the rawlog's clock
    cpu: float = 0.0  # user + system seconds of the child and the children it waited for (the parse pool)
    steal: float = 0.0  # CPU seconds the hypervisor gave other guests meanwhile, all CPUs (steal_seconds)


def ticketd(*args: str, profile: Path | None = None, statements: Path | None = None,
            fsyncs: Path | None = None, samples: Path | None = None) -> list[str]:
    """The ticketd command line from this venv.

    ``statements``: through ``bench.traced``, which writes the SQL statement counts there.
    ``profile``: under cProfile, the stats written there. Without either, the console script
    next to ``sys.executable`` (else ``python -m ticketd.daemon``), exactly as an admin runs it.
    ``fsyncs``: under strace, every fsync/fdatasync of the process tree logged there.
    ``samples``: under py-spy (parse workers included), collapsed stacks written there.
    """
    command = _python(args, profile, statements)
    if samples is not None:
        command = [_beside_python("py-spy"), "record", "--subprocesses", "--rate", "250", "--format", "raw",
                   "--output", str(samples), "--", *command]
    if fsyncs is None:
        return command
    # seccomp-bpf: only the traced calls stop the process, so the rest runs at full speed.
    return [find_program("strace"), "-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync,fdatasync",
            "-o", str(fsyncs), *command]


def count_fsyncs(path: Path) -> int | None:
    """The fsync and fdatasync calls in an strace log; None without one."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    return sum(1 for line in lines if _SYNC.search(line))


def _beside_python(name: str) -> str:
    """A program installed in this venv (pip puts py-spy there), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else find_program(name)


def _python(args: tuple[str, ...], profile: Path | None, statements: Path | None) -> list[str]:
    if statements is not None:
        target = ["-m", "bench.traced", "--out", str(statements), "--", *args]
    elif profile is not None:
        target = ["-m", "ticketd.daemon", *args]
    else:
        script = Path(sys.executable).parent / "ticketd"
        return [str(script), *args] if script.exists() else [sys.executable, "-m", "ticketd.daemon", *args]
    if profile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile), *target]
    return [sys.executable, *target]


def child_env() -> dict[str, str]:
    """The environment for ticketd: this checkout importable even when not installed.

    With its bytecode, as pip installs it: PYTHONDONTWRITEBYTECODE (set by some shells and CI)
    would make every start compile the whole daemon again, ~0.3 s of the start-up figure.
    """
    compiled()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@functools.cache
def compiled() -> None:
    """Write the checkout's bytecode once, before anything is timed (pip does it at install)."""
    for package in ("daemon", "storage"):
        compileall.compile_dir(REPO / package, quiet=1)


class Running:
    """A started ticketd: sampled while it runs, waited for with its own rusage."""

    def __init__(self, command: list[str], log: Path, timeout: float) -> None:
        self._out = log.open("wb")
        self.started_at = time.time()
        self._steal = steal_seconds()
        self._start = time.perf_counter()
        self.proc = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT, env=child_env(),
                                     cwd=log.parent)
        self._sampler = TreeSampler(self.proc.pid)
        self._sampler.start()
        self._watchdog = threading.Timer(timeout, self.proc.kill)
        self._watchdog.start()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def alive(self) -> bool:
        # waitid(WNOWAIT) leaves the zombie for wait4, which must still read its rusage.
        result = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return result is None

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> Child:
        # wait4 rather than proc.wait(): it gives this child's own rusage, not every child's.
        _, status, usage = os.wait4(self.proc.pid, 0)
        seconds = self.elapsed()
        self._watchdog.cancel()
        self._sampler.stop()
        self._out.close()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return Child(self.proc.returncode, seconds, usage.ru_maxrss * 1024, self._sampler.peak, self.started_at,
                     usage.ru_utime + usage.ru_stime, steal_seconds() - self._steal)


def steal_seconds() -> float:
    """CPU time this virtual machine was ready to run but the hypervisor ran someone else (/proc/stat).

    On a shared host this, not other load inside the machine, moved the same run by 30 % and
    more: a figure taken with much of it is not comparable with one taken without.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if fields[:1] == ["cpu"] and len(fields) > 8 else 0.0


def run_child(command: list[str], log: Path, timeout: float) -> Child:
    """Run command to its end; wall time, peak RSS of the largest process and of the tree."""
    return Running(command, log, timeout).wait()


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.pid))

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss(root: int) -> int:
    """Summed resident bytes of ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in family} - family
        family |= new
        grew = bool(new)
    return sum(_rss(pid) for pid in family)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0
