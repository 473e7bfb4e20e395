"""daemon.metrics' plain counters, and the collector that turns them into Prometheus families."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ticketd.daemon.commit import Outcome
from ticketd.daemon.filters.registry import known_filters
from ticketd.daemon.health import MailboxHealth
from ticketd.daemon.metrics import (ACKNOWLEDGEMENT, FILTERS, MAX_ARRIVALS, DatabaseFigures, Histogram, Metrics,
                            quarantine_reason)
from ticketd.daemon.metrics_http import TicketdCollector
from ticketd.storage import clock

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def exposition(metrics: Metrics, boxes: list[MailboxHealth]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What a scrape would return, parsed back by prometheus_client's own parser."""
    registry = CollectorRegistry()
    registry.register(TicketdCollector(metrics, boxes))
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_histogram_puts_a_value_on_a_bound_into_that_bucket_and_stays_cumulative() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    buckets, total = histogram.snapshot()
    assert buckets == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert total == 8.65


def test_quarantine_reasons_become_a_few_labels() -> None:
    assert quarantine_reason("too large: 30000000 bytes, the limit is 1000") == "too_large"
    assert quarantine_reason("unreadable: no header") == "unreadable"
    assert quarantine_reason("parser error: KeyError: 'x'") == "unreadable"
    assert quarantine_reason("processing error: ValueError: boom") == "processing_error"
    assert quarantine_reason("spam: spam score 12.0 >= 10.0; senders: blocked") == "spam"
    assert quarantine_reason("Message-ID <x@y> told us: do this") == "other"  # never the text itself
    assert FILTERS == known_filters()  # a new filter is a label of its own, not "other"


def test_an_acknowledgement_is_timed_from_its_message_arrival_only_once() -> None:
    metrics = Metrics()
    metrics.expect_acks([("<ack-1@x>", T0), ("<ack-2@x>", T0)])
    metrics.acknowledged(ACKNOWLEDGEMENT, "<ack-1@x>", T0 + timedelta(seconds=0.3))
    metrics.acknowledged(ACKNOWLEDGEMENT, "<ack-1@x>", T0 + timedelta(seconds=9))  # sent again: not timed again
    metrics.acknowledged("notification", "<ack-2@x>", T0 + timedelta(seconds=9))  # another kind: never timed
    assert metrics.sent == Counter({ACKNOWLEDGEMENT: 2, "notification": 1})
    assert metrics.ack_latency.snapshot()[0][-1] == ("+Inf", 1)
    assert abs(metrics.ack_latency.sum - 0.3) < 1e-9
    metrics.gave_up("<ack-2@x>", "rejected")
    assert metrics.arrivals == {} and metrics.send_failures == Counter({"rejected": 1})


def test_the_arrivals_kept_for_timing_are_bounded() -> None:
    metrics = Metrics()
    metrics.expect_acks([(f"<a{n}@x>", T0) for n in range(MAX_ARRIVALS + 5)])
    assert len(metrics.arrivals) == MAX_ARRIVALS
    assert "<a0@x>" not in metrics.arrivals and f"<a{MAX_ARRIVALS + 4}@x>" in metrics.arrivals


def test_the_collector_exports_every_counter_with_its_labels() -> None:
    metrics = Metrics()
    metrics.fetched["support"] += 50
    metrics.count_outcomes("support", [Outcome(1, "processed"), Outcome(2, "processed"),
                                       Outcome(3, "quarantined", reason="spam: spam score 11.0 >= 10.0")])
    metrics.verdicts["spam", "quarantine"] += 1
    metrics.expect_acks([("<secret-message-id@x>", T0)])
    metrics.acknowledged(ACKNOWLEDGEMENT, "<secret-message-id@x>", T0 + timedelta(seconds=2))
    metrics.spamd.errors["timeout"] += 2
    metrics.spamd.latency.observe(0.2)
    metrics.count_fired(Counter({("warning", "first_response"): 1, ("breach", "resolution"): 2,
                                 ("escalation", "vip"): 1}))
    metrics.due_run["auto_close"] += 3
    box = MailboxHealth("support")
    box.up()
    samples = exposition(metrics, [box, MailboxHealth("sales")])

    def at(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    assert at("ticketd_messages_fetched_total", mailbox="support") == 50
    assert at("ticketd_messages_fetched_total", mailbox="sales") == 0  # every mailbox, from the start
    assert at("ticketd_messages_processed_total", mailbox="support", outcome="processed") == 2
    assert at("ticketd_messages_quarantined_total", reason="spam") == 1
    assert at("ticketd_filter_verdicts_total", filter="spam", verdict="quarantine") == 1
    assert at("ticketd_outbox_sent_total", kind=ACKNOWLEDGEMENT) == 1
    assert at("ticketd_acknowledgement_latency_seconds_bucket", le="2.5") == 1
    assert at("ticketd_acknowledgement_latency_seconds_bucket", le="1.0") == 0
    assert at("ticketd_acknowledgement_latency_seconds_count") == 1
    assert at("ticketd_spamd_errors_total", reason="timeout") == 2
    assert at("ticketd_spamd_latency_seconds_count") == 1
    assert at("ticketd_sla_warnings_total", target="first_response") == 1
    assert at("ticketd_sla_breaches_total", target="resolution") == 2
    assert at("ticketd_sla_escalations_total", cause="vip") == 1
    assert at("ticketd_due_steps_run_total", kind="auto_close") == 3
    assert at("ticketd_imap_connected", mailbox="support") == 1
    assert at("ticketd_imap_connected", mailbox="sales") == 0
    assert all("secret-message-id" not in value for _, labels in samples for _, value in labels)
    assert all(name.startswith(("ticketd_",)) for name, _ in samples)
    assert ("ticketd_outbox_pending", frozenset()) not in samples  # no database figures read yet


def test_the_database_figures_are_exported_with_the_oldest_row_aged_at_scrape_time() -> None:
    metrics = Metrics()
    now = clock.now().timestamp()
    metrics.database = DatabaseFigures(read_at=now - 2, outbox_pending=4, outbox_oldest=now - 60, due_now=3,
                                       backlog={"support": 7})
    samples = exposition(metrics, [MailboxHealth("support"), MailboxHealth("sales")])
    assert samples[("ticketd_outbox_pending", frozenset())] == 4
    assert 60 <= samples[("ticketd_outbox_oldest_pending_age_seconds", frozenset())] < 70
    assert samples[("ticketd_due_steps_due", frozenset())] == 3
    assert samples[("ticketd_inbound_backlog", frozenset({("mailbox", "support")}))] == 7
    assert samples[("ticketd_inbound_backlog", frozenset({("mailbox", "sales")}))] == 0
    assert 2 <= samples[("ticketd_database_figures_age_seconds", frozenset())] < 10
