"""The webhook sender: POST committed webhook_delivery rows, one webhook's in order, retrying with backoff.

Each webhook has its own task, so a slow or dead endpoint holds up only its own events; mail
never waits for any of them (the HTTP request holds no database turn, and the two short
writes around it take the shared turn as an SMTP send does, daemon.turn).

Order: a webhook's rows go one at a time in order of id (storage.webhooks claims only the
first pending one), so a chat channel shows a ticket's events as they happened. A row being
retried therefore holds back the rows after it; that is what we want, as what fails it (the
endpoint down, slow, overloaded: a condition of the endpoint) fails them too. A row the
endpoint refuses for good (a 4xx) is marked failed and the next one goes: one bad request
never blocks the rest.

Exactly once, as for mail: a row is marked delivered by a commit right after the 2xx. A
crash between the two sends it again after its claim expires; the X-Ticketd-Event-Id header
(and Idempotency-Key) lets the receiver drop the copy. ``windows`` records how long that gap
was, as daemon.outbox does for SMTP's 250.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import logging
import random
import ssl
import time
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, TypeVar

import httpx

from ticketd.daemon.config_webhooks import WebhookConfig
from ticketd.daemon.instance import instance_id
from ticketd.daemon.metrics import Metrics
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.pause import pause
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import clock, webhooks
from ticketd.storage.errors import describe, is_temporary

log = logging.getLogger("ticketd.webhook")

POLL = 1.0  # seconds between looks for rows when not woken (events of the scheduler, another instance)
CLAIM_MARGIN = 30.0  # a claim outlives the request's timeout by this much
MAX_RETRY_AFTER = 3600.0  # an endpoint's Retry-After is honoured up to this
HEADER = "X-Ticketd-Signature"
ANSWER = 2000  # bytes of an endpoint's answer kept (a refusal's reason)
FIGURES = 10.0  # seconds between reads of the pending counts for the metrics

Clock = Callable[[], datetime]
T = TypeVar("T")


class WebhookSender:
    def __init__(self, hooks: tuple[WebhookConfig, ...], write_turn: WriteTurn | None = None,
                 metrics: Metrics | None = None, clock: Clock = clock.now, instance: str | None = None,
                 poll: float = POLL) -> None:
        self.hooks = {h.name: h for h in hooks}
        self.write_turn = write_turn or WriteTurn()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.instance = instance or instance_id()
        self.poll = poll
        self.wake = {name: asyncio.Event() for name in self.hooks}
        self._stop: asyncio.Event | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # webhook -> its loop, while it runs
        self.windows: list[float] = []  # seconds from a 2xx to the commit of "delivered"
        self.client = httpx.AsyncClient(verify=ssl.create_default_context(), follow_redirects=False,
                                        headers={"User-Agent": "ticketd"})

    def notify(self) -> None:
        for event in self.wake.values():
            event.set()

    def reconfigure(self, hooks: tuple[WebhookConfig, ...]) -> None:
        """A reload's webhooks: new URLs and keys at the next request, a new webhook's task started.

        A webhook removed from the file stops after its row in hand; its pending rows stay in the
        table (`ticketd status` counts them) and go once a webhook of that name is configured again.
        """
        self.hooks = {h.name: h for h in hooks}
        if self._stop is not None and not self._stop.is_set():
            for name in self.hooks:
                if name not in self._tasks:
                    self._start(name)

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """One task per webhook (and one for a reload's new ones) until ``stop``; a row in hand is finished."""
        self._stop = stop
        for name in self.hooks:
            self._start(name)
        figures = asyncio.create_task(self._figures(stop), name="webhook figures")
        await stop.wait()
        while self._tasks:  # each ends after its row in hand, which the request's timeout bounds
            await asyncio.gather(*list(self._tasks.values()))
        await figures

    def _start(self, name: str) -> None:
        assert self._stop is not None
        self.wake.setdefault(name, asyncio.Event())
        self._tasks[name] = asyncio.create_task(self._loop(name, self._stop), name=f"webhook:{name}")

    async def _figures(self, stop: asyncio.Event, every: float = FIGURES) -> None:
        """The pending rows per webhook, for the metrics: every instance's, as the database holds them."""
        while not stop.is_set():
            try:
                found = await webhooks.waiting()
                self.metrics.webhook_pending = {name: found[name].pending if name in found else 0
                                                for name in {*self.hooks, *found}}
            except Exception as exc:
                log.debug("webhook figures not read: %s", exc)
            await pause(stop, every)

    async def deliver_due(self, deadline: float | None = None) -> int:
        """Each webhook's due rows until none is due or ``deadline`` (time.monotonic()); the rows tried."""
        counts = await asyncio.gather(*(self._pass(name, deadline) for name in self.hooks))
        return sum(counts)

    async def _loop(self, name: str, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set() and name in self.hooks:
                try:
                    await self._pass(name, None, stop)
                    wait = await self._idle_for(name)
                except Exception as exc:  # the rows stay where they are: tried again in a moment
                    if is_temporary(exc):
                        log.warning("webhook %s: waiting for the database: %s", name, describe(exc))
                    else:  # a bug, or a row no code expects: logged, and the daemon goes on
                        log.exception("webhook %s: delivery failed; trying again shortly", name)
                    wait = self.poll * 5
                wake = self.wake[name]
                try:
                    await asyncio.wait_for(_either(stop, wake), wait)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
        finally:
            self._tasks.pop(name, None)

    async def _idle_for(self, name: str) -> float:
        due = await webhooks.next_due(name)
        if due is None:
            return self.poll
        return min(self.poll, max(0.0, (due - self.clock()).total_seconds()))

    async def _pass(self, name: str, deadline: float | None, stop: asyncio.Event | None = None) -> int:
        tried = 0
        while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
            hook, now = self.hooks.get(name), self.clock()
            if hook is None:  # removed by a reload
                return tried
            row = await self._write(lambda: webhooks.claim(name, self.instance, now,
                                                           now + timedelta(seconds=hook.timeout + CLAIM_MARGIN)))
            if row is None:
                return tried
            tried += 1
            await self._deliver(hook, row)

    async def _deliver(self, hook: WebhookConfig, row: webhooks.Claimed) -> None:
        try:
            status, wait, said = await self._post(hook, row)
        except (httpx.TransportError, TimeoutError) as exc:
            await self._again(hook, row, f"no answer from {hook.where}: {type(exc).__name__} {one_line(str(exc))}"
                              .strip(), None)
            return
        if 200 <= status < 300:
            answered = time.monotonic()
            first = await self._write(lambda: webhooks.delivered(row.id, self.clock()), retry=True)
            self.windows.append(time.monotonic() - answered)
            self.metrics.webhook_delivered[hook.name] += 1
            if not first:
                log.warning("webhook %s: event %s was delivered twice: our claim ran out and another instance "
                            "sent it too (the receiver de-duplicates by X-Ticketd-Event-Id)", hook.name, row.event_id)
            log.info("webhook %s: %s event %s delivered (HTTP %d)", hook.name, row.event, row.event_id, status)
            return
        reason = f"HTTP {status} from {hook.where}"
        if status in (408, 429) or status >= 500 or 300 <= status < 400:
            # A condition of the endpoint (down, overloaded, asking us to slow down; a redirect:
            # a URL to correct in the config, which a reload picks up): the same request may succeed later.
            await self._again(hook, row, reason, retry_after(wait, self.clock()))
            return
        # Any other 4xx is the endpoint's judgement of this request (a payload it will not take,
        # a token it refuses): sending the same bytes again cannot change it. Failed, with the
        # reason, and the next row goes: no retry storm, and `ticketd status` counts them.
        await self._fail(hook, row, f"{reason}: {one_line(said, 200)}".rstrip(": "))

    async def _post(self, hook: WebhookConfig, row: webhooks.Claimed) -> tuple[int, str | None, str]:
        """(status, Retry-After, the start of the answer): an endpoint's body is read up to ANSWER bytes only."""
        async with asyncio.timeout(hook.timeout):  # the whole request, not each read
            async with self.client.stream("POST", hook.url.reveal(), content=row.body.encode("utf-8"),
                                          headers=headers(hook, row)) as response:
                head = b""
                async for chunk in response.aiter_raw():
                    head += chunk
                    if len(head) >= ANSWER:
                        break
                return response.status_code, response.headers.get("Retry-After"), \
                    head[:ANSWER].decode("utf-8", "replace")

    async def _again(self, hook: WebhookConfig, row: webhooks.Claimed, reason: str, wait: float | None) -> None:
        now = self.clock()
        if (now - row.created_at).total_seconds() >= hook.give_up_after:
            await self._fail(hook, row, f"gave up after {hook.give_up_after:.0f} s: {reason}")
            return
        delay = max(backoff(hook, row.attempts), min(wait or 0.0, MAX_RETRY_AFTER))
        await self._write(lambda: webhooks.retry(row.id, self.instance, now + timedelta(seconds=delay), reason),
                          retry=True)
        self.metrics.webhook_retried[hook.name] += 1
        log.warning("webhook %s: event %s not delivered (%s); next try in %.1f s", hook.name, row.event_id, reason,
                    delay)

    async def _fail(self, hook: WebhookConfig, row: webhooks.Claimed, reason: str) -> None:
        await self._write(lambda: webhooks.failed(row.id, self.instance, reason), retry=True)
        self.metrics.webhook_failed[hook.name] += 1
        log.error("webhook %s: event %s failed: %s", hook.name, row.event_id, reason)


    async def _write(self, statement: Callable[[], Awaitable[T]], retry: bool = False) -> T:
        """One short statement in a shared turn (daemon.turn), as an SMTP send's "sent" is written.

        ``retry``: what became of a row we hold is tried again while our claim lasts (a locked
        database, a PostgreSQL fail-over): given up, the row is sent again once its claim expires.
        """
        deadline = time.monotonic() + CLAIM_MARGIN / 2
        while True:
            try:
                async with self.write_turn.shared() as turn:
                    turn.accepted()  # one short statement: no reason to hold transactions back
                    return await statement()
            except Exception as exc:
                if not (retry and is_temporary(exc)) or time.monotonic() > deadline:
                    raise
                log.warning("webhook: recording a delivery waits for the database: %s", describe(exc))
                await asyncio.sleep(0.5)

    def log_windows(self) -> None:
        """How long a crash could have made us POST twice: the 2xx-to-commit gap (as daemon.app logs SMTP's)."""
        if self.windows:
            ordered = sorted(self.windows)
            log.info("webhooks: %d delivered; 2xx-to-commit window median %.2f ms, max %.2f ms", len(ordered),
                     ordered[len(ordered) // 2] * 1000, ordered[-1] * 1000)


def headers(hook: WebhookConfig, row: webhooks.Claimed) -> dict[str, str]:
    """The event's id twice (ours, and the Idempotency-Key draft's name for it), and the signature."""
    out = {"Content-Type": "application/json", "X-Ticketd-Event": row.event, "X-Ticketd-Event-Id": row.event_id,
           "Idempotency-Key": row.event_id, "X-Ticketd-Delivery-Attempt": str(row.attempts + 1)}
    if hook.secret is not None:
        out[HEADER] = signature(hook.secret.reveal(), row.body.encode("utf-8"))
    return out


def signature(key: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the webhook's secret."""
    return "sha256=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff(hook: WebhookConfig, attempts: int) -> float:
    """Exponential, capped at retry_max, with jitter: instances and webhooks retrying at once spread out."""
    delay = min(hook.retry_max, hook.retry_base * 2 ** min(attempts, 30))
    return delay * random.uniform(0.5, 1.0)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds the Retry-After header asks for (a number or an HTTP date, RFC 9110 10.2.3); None if none."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
