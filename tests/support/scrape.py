"""A real `ticketd run` process with [metrics], scraped over HTTP and parsed by prometheus_client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import PROJECT, cli

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_metrics(config: Path, port: int, extra: str = "") -> Path:
    """Add ``[metrics] listen = "127.0.0.1:PORT"`` (and ``extra`` lines) to a written config."""
    config.write_text(config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n{extra}\n')
    return config


@contextmanager
def daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``ticketd run`` until the block ends, then SIGTERM; it must stop cleanly (its log says why not)."""
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"], cwd=PROJECT,
                                   env=dict(os.environ, PYTHONPATH=str(PROJECT)), stdout=out, stderr=out)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert code == 0, log.read_text()[-3000:]


def scrape(port: int) -> Samples:
    """Every sample of one GET /metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Call ``check`` until it returns something truthy (the last value, falsy, after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:  # the endpoint is not up yet
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def status(config: Path) -> Any:
    """``ticketd status --json`` as a separate process, as an admin runs it from another shell."""
    import json

    done = cli(config, "status", "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)
