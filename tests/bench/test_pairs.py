"""bench.pairs: issue 8's ratio from runs taken in turns, and each run's steal."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from bench.child import steal_seconds
from bench.pairs import notify_pairs, summary


def run(seconds: float, steal: float = 0.0, problems: tuple[str, ...] = ()) -> SimpleNamespace:
    child = SimpleNamespace(seconds=seconds, steal=steal, cpu=seconds)
    return SimpleNamespace(n=1000, child=child, problems=lambda: list(problems))


def test_steal_is_read_from_the_kernel_and_never_goes_back() -> None:
    first = steal_seconds()
    assert first >= 0.0
    assert steal_seconds() >= first


def test_pairs_alternate_and_the_summary_gives_the_medians_and_the_calm_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    cpus = os.cpu_count() or 1
    runs = iter([run(2.0), run(2.5), run(5.0), run(4.0, steal=1.0 * cpus), run(2.0), run(2.2)])
    asked: list[bool] = []

    def one(notify: bool) -> SimpleNamespace:
        asked.append(notify)
        return next(runs)

    pairs, problems = notify_pairs(3, one)  # type: ignore[arg-type]
    assert asked == [False, True, True, False, False, True] and problems == []  # each pair's first in turn
    summary(pairs)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "ratio 0.800" in out and "ratio 0.909" in out  # 500/400 msg/s, and 454.5/500
    assert "medians: 500.0 msg/s without, 400.0 with notifications, ratio 0.800" in out
    assert "median 0.800, lowest 0.800, highest 0.909" in out
    assert "2 pairs with under 5% steal in both runs: median ratio 0.855" in out  # the second pair had 25 %


def test_a_failed_run_is_named_with_its_pair() -> None:
    runs = iter([run(2.0), run(2.0, problems=("3 acknowledgements missing",))])
    _, problems = notify_pairs(1, lambda notify: next(runs))  # type: ignore[arg-type, return-value]
    assert problems == ["pair 1, with: 3 acknowledgements missing"]
