"""Our parse of the real-world corpus agrees with other parsers' expectations, field by field.

Comparison rules (the why of each lives in peer_expectations.py): whitespace is normalized;
HTML is compared as its text content; Stalwart's expectations are for the message with every
CR removed, so we parse those bytes; a U+FFFD in a peer's value (a byte it could not decode)
matches any character of ours; uuencoded files are compared after decoding; Zammad's own
inventions (names for unnamed parts, <gen-...> Message-IDs, its message.html copy of the
HTML body) are not compared. Every remaining disagreement is listed in conformance_known.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

from tests.parsers.conformance_known import KNOWN
from tests.parsers.peer_expectations import CORPUS, PEERS, Check

ADDRESS_FIELDS = {"from_email", "from_name", "to", "cc", "reply_to"}
THRESHOLDS: dict[str, float] = {
    **{field: 0.95 for field in ADDRESS_FIELDS},
    "subject": 0.95,
    "attachment_content": 0.95,
    "attachment_name": 0.95,
    "body": 0.90,
    "body_text": 0.90,
    "body_html": 0.90,
}
CORPUS_FOLDERS = {"zammad": "zammad", "stalwart": "stalwart-mail-parser", "mime4j": "james-mime4j"}

Table = dict[tuple[str, str], tuple[int, int]]


@pytest.fixture(scope="module")
def checks(summary: Callable[[str], None]) -> list[Check]:
    found = [check for compare in PEERS.values() for check in compare()]
    summary(render(table(found)))
    return found


def table(found: list[Check]) -> Table:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for check in found:
        counts[(check.corpus, check.field)][0] += check.agree
        counts[(check.corpus, check.field)][1] += 1
    return {key: (agree, total) for key, (agree, total) in counts.items()}


def render(rows: Table) -> str:
    lines = [f"{'corpus':10} {'field':20} {'agree':>9} {'rate':>7} {'needed':>7}"]
    for (corpus, field), (agree, total) in sorted(rows.items()):
        needed = f"{THRESHOLDS[field]:.0%}" if field in THRESHOLDS else "-"
        lines.append(f"{corpus:10} {field:20} {agree:>4}/{total:<4} {agree / total:>7.1%} {needed:>7}")
    return "conformance with peer parsers (agreement = matches / comparisons)\n" + "\n".join(lines)


def test_corpus_is_beside_the_project() -> None:
    # A missing corpus must fail the suite, never skip it.
    for folder in CORPUS_FOLDERS.values():
        assert (CORPUS / folder).is_dir(), f"corpus folder missing: {CORPUS / folder}"


@pytest.mark.parametrize("corpus", sorted(CORPUS_FOLDERS))
def test_agreement_meets_the_thresholds(checks: list[Check], corpus: str) -> None:
    rows = {field: counts for (name, field), counts in table(checks).items() if name == corpus}
    assert rows, f"no comparisons for {corpus}"
    low = {
        field: f"{agree}/{total}"
        for field, (agree, total) in rows.items()
        if field in THRESHOLDS and agree / total < THRESHOLDS[field]
    }
    assert not low, f"{corpus}: agreement below the threshold: {low}\n{render(table(checks))}"


def test_every_disagreement_is_a_known_difference(checks: list[Check]) -> None:
    new = [c for c in checks if not c.agree and c.key not in KNOWN]
    detail = "\n".join(f"{c.key}: expected {c.expected[:120]!r}, got {c.actual[:120]!r}" for c in new)
    assert not new, f"disagreements not in conformance_known.py (a regression?):\n{detail}"


def test_no_known_difference_is_stale(checks: list[Check]) -> None:
    still = {c.key for c in checks if not c.agree}
    stale = sorted(set(KNOWN) - still)
    assert not stale, f"now agreeing, remove from conformance_known.py: {stale}"


def test_known_differences_say_whose_opinion() -> None:
    unclassified = [key for key, reason in KNOWN.items() if not reason.startswith(("opinion: ", "peer: "))]
    assert not unclassified
