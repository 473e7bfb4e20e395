"""Smoke test of bench/sla.py: 200 tickets, and the once-only check passes (the time is not asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sla import main
from tests.support import backend


@backend.sqlite_only("bench.sla makes its own SQLite file and checks it with sqlite3")
def test_sla_bench_fires_each_due_step_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tickets", "200", "--dir", str(tmp_path / "sla")]) == 0
    out = capsys.readouterr().out
    assert "once-only: OK" in out and "FAILED" not in out
    assert "0 step(s) fired" in out  # the second run
