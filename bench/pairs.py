"""Issue 8's figure: runs without and with notifications, taken in turns, and their ratio.

On this shared 2-core host one run of a configuration came out 30 % faster or slower than the
next: the hypervisor's steal (bench.child.steal_seconds), not load inside the machine. So one
run of each says little. K runs of each, taken in turns, give K ratios of neighbours and two
medians, and each run says how much steal it had. The pairs take turns at going first (without,
with; then with, without): a host that slows down or speeds up over a minute would otherwise
favour whichever configuration always runs first.
"""

from __future__ import annotations

import os
from statistics import median
from typing import Callable

from bench.imaprun import Result
from bench.report import rate

CALM = 0.05  # a run with less steal than this share of the CPUs' time counts as calm


def notify_pairs(k: int, run_one: Callable[[bool], Result]) -> tuple[list[tuple[Result, Result]], list[str]]:
    """K pairs (without, with notifications) from ``run_one(notify)``; and every problem a run had."""
    pairs, problems = [], []
    for attempt in range(1, k + 1):
        if attempt % 2:
            plain, notified = run_one(False), run_one(True)
        else:
            notified, plain = run_one(True), run_one(False)
        for label, result in (("without", plain), ("with", notified)):
            problems += [f"pair {attempt}, {label}: {problem}" for problem in result.problems()]
        pairs.append((plain, notified))
        print(f"  pair {attempt}: {_line(plain)} without, {_line(notified)} with notifications: "
              f"ratio {rate(notified) / rate(plain):.3f}", flush=True)
    return pairs, problems


def summary(pairs: list[tuple[Result, Result]]) -> None:
    plain, notified = [rate(p) for p, _ in pairs], [rate(n) for _, n in pairs]
    ratios = [n / p for p, n in zip(plain, notified)]
    print(f"\n  medians: {median(plain):.1f} msg/s without, {median(notified):.1f} with notifications, "
          f"ratio {median(notified) / median(plain):.3f}")
    print(f"  the {len(pairs)} pairs' ratios: median {median(ratios):.3f}, lowest {min(ratios):.3f}, "
          f"highest {max(ratios):.3f} (issue 8: within 15 %, 0.85 and up)")
    calm = [n / p for (a, b), p, n in zip(pairs, plain, notified) if steal_share(a) < CALM and steal_share(b) < CALM]
    print(f"  {len(calm)} pairs with under {CALM:.0%} steal in both runs"
          + (f": median ratio {median(calm):.3f}" if calm else ""))


def steal_share(result: Result) -> float:
    """The run's steal as a share of all the CPUs' time while it ran."""
    return result.child.steal / (result.child.seconds * (os.cpu_count() or 1))


def _line(result: Result) -> str:
    return (f"{rate(result):6.1f} msg/s ({result.child.cpu / result.n * 1000:.2f} ms CPU a message, "
            f"steal {steal_share(result):.0%})")
