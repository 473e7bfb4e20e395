"""The Prometheus endpoint: daemon.metrics' counters as metric families, served from a thread.

prometheus_client's own HTTP server runs in a thread of its own (one more per scrape), so a
scrape costs the event loop nothing but the GIL while the families are built (well under a
millisecond). The collector only reads what the loop wrote (see daemon.metrics); the database's
figures are the last ones daemon.health read. Imported only where [metrics] is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ticketd.daemon.config_metrics import EndpointError, MetricsConfig
from ticketd.daemon.health import MailboxHealth
from ticketd.daemon.metrics import Histogram, Metrics
from ticketd.storage import clock

log = logging.getLogger("ticketd.metrics")


def _counter(name: str, text: str, labels: Sequence[str], values: dict[tuple[str, ...], int]) -> Metric:
    family = CounterMetricFamily(name, text, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(key, value)
    return family


def _gauge(name: str, text: str, labels: Sequence[str], values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(key, value)
    return family


def _histogram(name: str, text: str, histogram: Histogram) -> Metric:
    buckets, total = histogram.snapshot()
    return HistogramMetricFamily(name, text, buckets=buckets, sum_value=total)


def _by(counter: Counter[str], seed: Iterable[str] = ()) -> dict[tuple[str, ...], int]:
    """One label: the counter copied (one C call), with a zero for each ``seed`` key not counted yet."""
    copied = dict(counter)
    return {(key,): copied.get(key, 0) for key in {*copied, *seed}}


def _pairs(counter: Counter[tuple[str, str]]) -> dict[tuple[str, ...], int]:
    return dict(counter)  # type: ignore[arg-type]


class TicketdCollector(Collector):
    """Builds every ticketd_* family from the loop's plain values, at scrape time."""

    def __init__(self, metrics: Metrics, boxes: list[MailboxHealth]) -> None:
        self.metrics = metrics
        self.boxes = boxes

    def collect(self) -> Iterator[Metric]:
        m, names = self.metrics, [box.name for box in self.boxes]
        yield _counter("ticketd_messages_fetched_total", "Messages fetched over IMAP and stored.",
                       ["mailbox"], _by(m.fetched, names))
        yield _counter("ticketd_lmtp_messages_total", "Messages delivered over LMTP and stored.",
                       ["mailbox"], _by(m.lmtp))
        yield _counter("ticketd_messages_processed_total", "Stored messages through the pipeline, by outcome.",
                       ["mailbox", "outcome"], _pairs(m.processed))
        yield _counter("ticketd_messages_quarantined_total", "Messages quarantined, by reason.",
                       ["reason"], _by(m.quarantined))
        yield _counter("ticketd_filter_verdicts_total", "Each filter's verdict on each message it checked.",
                       ["filter", "verdict"], _pairs(m.verdicts))
        yield _counter("ticketd_imap_reconnects_total", "IMAP sessions lost or refused (each is retried).",
                       ["mailbox"], _by(m.reconnects, names))
        yield _gauge("ticketd_imap_connected", "1 while the mailbox's IMAP session is logged in.",
                     ["mailbox"], {(box.name,): float(box.connected) for box in self.boxes})
        yield _histogram("ticketd_acknowledgement_latency_seconds",
                         "From a message's arrival (stored) to the SMTP server's 250 for its acknowledgement.",
                         m.ack_latency)
        yield _counter("ticketd_outbox_sent_total", "Outbox messages the SMTP server accepted, by kind.",
                       ["kind"], _by(m.sent))
        yield _counter("ticketd_outbox_failures_total", "Delivery attempts that did not end in sent, by reason.",
                       ["reason"], _by(m.send_failures))
        yield _counter("ticketd_spamd_errors_total", "spam checks that got no score from spamd, by reason.",
                       ["reason"], _by(m.spamd.errors))
        yield _histogram("ticketd_spamd_latency_seconds", "One spamd SYMBOLS exchange that gave a score.",
                         m.spamd.latency)
        yield _counter("ticketd_sla_warnings_total", "SLA warnings fired, by target.", ["target"], _by(m.sla_warnings))
        yield _counter("ticketd_sla_breaches_total", "SLA breaches fired, by target.", ["target"], _by(m.sla_breaches))
        yield _counter("ticketd_sla_escalations_total", "Tickets raised a tier, by cause (target or trigger).",
                       ["cause"], _by(m.escalations))
        yield _counter("ticketd_due_steps_run_total", "Due steps (timers) run, by kind.", ["kind"], _by(m.due_run))
        yield _counter("ticketd_webhook_delivered_total", "Webhook events the endpoint answered 2xx to.",
                       ["webhook"], _by(m.webhook_delivered))
        yield _counter("ticketd_webhook_failed_total", "Webhook events refused (4xx) or given up.",
                       ["webhook"], _by(m.webhook_failed))
        yield _counter("ticketd_webhook_retries_total", "Webhook attempts that will be tried again.",
                       ["webhook"], _by(m.webhook_retried))
        yield _gauge("ticketd_webhook_pending", "Webhook events waiting for delivery.", ["webhook"],
                     {(name,): float(n) for name, n in m.webhook_pending.items()})
        yield _counter("ticketd_oauth_token_errors_total", "OAuth2 logins that got no access token, by peer "
                       "(mailbox:NAME, smtp) and reason (revoked, refused, unreachable, missing).",
                       ["peer", "reason"], _pairs(m.oauth_errors))
        yield from self._database(names)
        yield GaugeMetricFamily("ticketd_start_time_seconds", "When the daemon started (Unix time).",
                                value=m.started)

    def _database(self, names: list[str]) -> Iterator[Metric]:
        """The figures daemon.health last read; none before its first read."""
        figures = self.metrics.database
        if figures is None:
            return
        now = clock.now().timestamp()  # the pipeline's clock: created_at was written with it
        yield _gauge("ticketd_inbound_backlog", "Messages stored but not yet processed.", ["mailbox"],
                     {key: float(v) for key, v in _by(Counter(figures.backlog), names).items()})
        yield GaugeMetricFamily("ticketd_outbox_pending", "Outbox rows waiting for delivery.",
                                value=figures.outbox_pending)
        age = max(0.0, now - figures.outbox_oldest) if figures.outbox_oldest is not None else 0.0
        yield GaugeMetricFamily("ticketd_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending outbox row (0 when none is pending).", value=age)
        yield GaugeMetricFamily("ticketd_due_steps_due", "Due steps (SLA, reminders, auto-solve/close) due now.",
                                value=figures.due_now)
        yield GaugeMetricFamily("ticketd_database_figures_age_seconds",
                                "Seconds since the database figures above were read.",
                                value=max(0.0, clock.now().timestamp() - figures.read_at))


class Endpoint:
    """The HTTP server and its thread, for one run of the daemon."""

    def __init__(self, config: MetricsConfig, metrics: Metrics, boxes: list[MailboxHealth]) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)  # ours alone: no global registry
        self.registry.register(TicketdCollector(metrics, boxes))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory, fds
        self._server: WSGIServer | None = None

    async def start(self) -> None:
        """Bind (in a thread: wsgiref looks the host's name up) and serve; EndpointError if it cannot."""
        try:
            self._server, _ = await asyncio.to_thread(start_http_server, self.config.port, self.config.host,
                                                      self.registry)
        except OSError as exc:
            raise EndpointError(f"metrics.listen {self.config.listen}: {exc.strerror or exc}") from None
        log.info("metrics on http://%s/metrics", self.config.listen)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:  # shutdown() waits for serve_forever's poll (0.5 s): not in the loop
            await asyncio.to_thread(server.shutdown)
            server.server_close()
