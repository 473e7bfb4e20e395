"""The daemon's life cycle: start the tasks, wait for a stop signal, stop with grace then deadline."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable

from ticketd.daemon import due, retention, sweeper
from ticketd.daemon.config import Config, ConfigError, load_config
from ticketd.daemon.config_metrics import EndpointError
from ticketd.daemon.config_instance import InstanceConfig
from ticketd.daemon.fetcher import MailboxWorker
from ticketd.daemon.imap import ImapSession
from ticketd.daemon.instance import identity
from ticketd.daemon.leases import LeaseKeeper
from ticketd.daemon.metrics import Metrics
from ticketd.daemon.observe import Observers
from ticketd.daemon.outbox import OutboxSender
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.readiness import ServiceState
from ticketd.daemon.responders import build_responders
from ticketd.daemon.sdnotify import Notifier
from ticketd.daemon.start import parse_pool as parse_pool  # its old home: tests and tools name it here
from ticketd.daemon.terminal import safe_line
from ticketd.daemon.turn import WriteTurn
from ticketd.storage.db import database
from ticketd.storage.errors import TemporaryFailure

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager

log = logging.getLogger("ticketd")


@asynccontextmanager
async def running_parts(config: Config, parse_workers: int | None = None, pool: Executor | None = None,
                        sessions: dict[str, ImapSession] | None = None) -> AsyncIterator[
        tuple[OutboxSender, Processor, list[MailboxWorker]]]:
    """The daemon's parts; ``pool`` and ``sessions`` (begun by daemon.start) become theirs.

    The metrics endpoint is served before the block (EndpointError if it cannot be), and the
    mailboxes' status is written for `ticketd status` until the block ends.
    """
    responders = build_responders(config)
    pool = pool if pool is not None else parse_pool(parse_workers)
    sessions = sessions or {}
    try:
        async with database(config.database_url, config.busy_timeout):
            write_turn, metrics = WriteTurn(), Metrics()
            keeper = _lease_keeper(config, write_turn)
            await keeper.start()  # each worker then knows at once whether its folder is ours
            try:
                tokens = _token_manager(config, metrics)
                sender = OutboxSender(config.smtp, write_turn=write_turn, lanes=config.smtp.connections,
                                      metrics=metrics, tokens=tokens)
                processor = Processor(config, responders, pool, on_outbox=sender.notify, write_turn=write_turn,
                                      metrics=metrics)
                if tokens is not None:
                    tokens.on_outbox = sender.notify  # the admin's mail about a revoked grant
                _webhooks(processor)
                workers = [MailboxWorker(box, processor, config.max_message_bytes, lease=keeper.leases[box.name],
                                         first_session=sessions.pop(box.name, None),
                                         session_factory=lambda box: ImapSession(box.imap, tokens))
                           for box in config.mailboxes]
                observers = Observers(config, processor, workers, holder=keeper.me.id)
                await observers.start()
                try:
                    yield sender, processor, workers
                finally:
                    await observers.stop()
                    await sender.close()
                    if processor.webhook_sender is not None:
                        await processor.webhook_sender.close()
            finally:  # after the last health write, which a lease still ours lets through
                await keeper.stop()
    finally:
        await asyncio.gather(*(s.close() for s in sessions.values()))  # begun, but no worker took it
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _webhooks(processor: Processor) -> None:
    """The webhook sender beside the outbox's, where [[webhooks]] are configured (httpx imported only then)."""
    if processor.config.webhooks:
        from ticketd.daemon.webhook_sender import WebhookSender

        processor.webhook_sender = hooks = WebhookSender(processor.config.webhooks, processor.write_turn,
                                                         processor.metrics)
        processor.on_webhook = hooks.notify


def _lease_keeper(config: Config, write_turn: WriteTurn) -> LeaseKeeper:
    settings = config.instance or InstanceConfig()
    return LeaseKeeper(identity(settings.name), [box.name for box in config.mailboxes], settings.lease_seconds,
                       write_turn)


def _token_manager(config: Config, metrics: Metrics) -> TokenManager | None:
    """daemon.oauth's, when a login uses OAuth2 (imported only then: httpx is a start-up's cost)."""
    if all(peer.auth == "password" for peer in (config.smtp, *(box.imap for box in config.mailboxes))):
        return None
    from ticketd.daemon.config_oauth import OAuthSettings
    from ticketd.daemon.oauth import TokenManager

    return TokenManager(config.oauth or OAuthSettings(), config, errors=metrics.oauth_errors)


async def run_once(config: Config, parse_workers: int | None = None, pool: Executor | None = None,
                   sessions: dict[str, ImapSession] | None = None) -> int:
    """Drain every mailbox, deliver the outbox, and say (by exit code) whether all went well."""
    try:
        return await _drain_once(config, parse_workers, pool, sessions)
    except EndpointError as exc:
        log.error("not starting: %s", safe_line(str(exc)))
        return 1


async def _drain_once(config: Config, parse_workers: int | None, pool: Executor | None,
                      sessions: dict[str, ImapSession] | None) -> int:
    async with running_parts(config, parse_workers, pool, sessions) as (sender, processor, workers):
        stop_sender = asyncio.Event()
        sending = asyncio.create_task(sender.run(stop_sender))  # deliver while we still fetch
        results = await asyncio.gather(*(w.run_once() for w in workers), _sweep_once(processor))
        results.append(await _due_once(processor))
        stop_sender.set()
        await sending
        if processor.webhook_sender is not None:  # one try each: an endpoint that is down waits for the next run
            await processor.webhook_sender.deliver_due(time.monotonic() + config.outbox_drain)
            processor.webhook_sender.log_windows()
        pending = (await sender.drain(config.outbox_drain, ignore_schedule=True)).deferred
        failed = sender.totals.failed
        _log_windows(sender.totals.windows)
        if failed or pending:
            log.error("outbox: %d failed, %d still waiting for delivery", failed, pending)
        return 0 if all(results) and not failed and not pending else 1


async def _due_once(processor: Processor) -> bool:
    """The life cycle's timed steps that are due (reminders, auto-solve, auto-close)."""
    try:
        await due.run_due(processor)
        return True
    except TemporaryFailure as exc:
        log.error("due steps must wait for the next run: %s", exc)
        return False


async def _sweep_once(processor: Processor) -> bool:
    """Piped messages that an `ingest` stored but did not finish; False if some must wait."""
    try:
        await sweeper.sweep(processor, timedelta(0))  # a concurrent ingest's row is skipped by the claim
        return True
    except TemporaryFailure as exc:
        log.error("piped messages must wait for the next run: %s", exc)
        return False


async def run_forever(config: Config, stop: asyncio.Event | None = None, parse_workers: int | None = None,
                      pool: Executor | None = None, sessions: dict[str, ImapSession] | None = None,
                      notifier: Notifier | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); finish the batch in hand, then drain the outbox.

    ``notifier`` tells systemd (Type=notify) when the daemon is ready, reloading or stopping.
    """
    stop = stop or asyncio.Event()
    try:
        return await _serve(config, stop, parse_workers, pool, sessions, notifier or Notifier())
    except EndpointError as exc:
        log.error("not starting: %s", safe_line(str(exc)))
        return 1
    finally:
        _remove_signals()


async def _serve(config: Config, stop: asyncio.Event, parse_workers: int | None, pool: Executor | None,
                 sessions: dict[str, ImapSession] | None, notifier: Notifier) -> int:
    _install_signals(stop)
    async with running_parts(config, parse_workers, pool, sessions) as (sender, processor, workers):
        state = ServiceState(notifier, workers, sender, safe_line(config.lmtp.listen) if config.lmtp else None)
        _install_reload(lambda: state.reload(lambda: reload(processor, config.path)))
        stop_sender = asyncio.Event()
        stop_intake = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if config.lmtp is not None:
            from ticketd.daemon.lmtp_listen import ListenError, LmtpService  # aiosmtpd only where LMTP is on

            listener = LmtpService(config.lmtp, processor, finish_grace=min(5.0, config.stop_grace / 2))
            try:
                await listener.start()
            except ListenError as exc:
                log.error("not starting: %s", safe_line(str(exc)))
                return 1
            tasks.append(asyncio.create_task(listener.run(stop_intake), name="lmtp"))
        tasks += [asyncio.create_task(w.run(), name=f"mailbox:{w.config.name}") for w in workers]
        tasks.append(asyncio.create_task(sweeper.run(processor, stop_intake), name="piped"))
        tasks.append(asyncio.create_task(due.run_forever(processor, stop_intake), name="due"))
        tasks.append(asyncio.create_task(retention.run_forever(processor, stop_intake), name="retention"))
        sending = asyncio.create_task(sender.run(stop_sender), name="outbox")
        hooks = [asyncio.create_task(processor.webhook_sender.run(stop_sender), name="webhooks")] \
            if processor.webhook_sender is not None else []
        log.info("ticketd running: %d IMAP mailbox(es), %d piped address(es), LMTP %s", len(workers),
                 len(config.addresses), safe_line(config.lmtp.listen) if config.lmtp else "off")
        async with _ready_then_alive(state, stop):
            await stop.wait()
            log.info("stopping: finishing the messages in hand (up to %.0f s)", config.stop_grace)
            state.stopping()
            stop_intake.set()
            for worker in workers:
                worker.stop.set()
            await _finish(tasks, config.stop_grace)
            stop_sender.set()
            await _finish([sending, *hooks], config.stop_grace)
            report = await sender.drain(config.outbox_drain)
        log.info("stopped; outbox: %d sent on the way out", report.sent)
    return 0


@asynccontextmanager
async def _ready_then_alive(state: ServiceState, stop: asyncio.Event) -> AsyncIterator[None]:
    """READY once the parts are up, then WATCHDOG=1 from this loop until the stop is done."""
    await state.wait_until_up(stop)
    state.announce_ready()
    done = asyncio.Event()
    pinging = asyncio.create_task(state.notifier.keep_alive(state.status, done), name="watchdog")
    try:
        yield
    finally:
        done.set()
        await pinging


async def _finish(tasks: list[asyncio.Task[None]], grace: float) -> None:
    done, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        log.warning("task %s did not stop within %.0f s; cancelling", task.get_name(), grace)
        task.cancel()
    if late:
        await asyncio.gather(*late, return_exceptions=True)


def _log_windows(windows: list[float]) -> None:
    """How long a crash could have made us send twice: the 250-to-commit gap, per message."""
    if windows:
        ordered = sorted(windows)
        log.info("outbox: %d sent; 250-to-commit window median %.2f ms, p99 %.2f ms, max %.2f ms",
                 len(ordered), ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000,
                 ordered[-1] * 1000)


def reload(processor: Processor, path: Path) -> bool:
    """Re-read the configuration and rules; swap them in whole, or keep the old ones and say why."""
    old = processor.config
    try:
        new = load_config(path)
        processor.reconfigure(new)  # builds responders and filters first: a broken template stops here
        if processor.webhook_sender is not None:
            processor.webhook_sender.reconfigure(new.webhooks)
        elif new.webhooks:
            log.warning("reload: [[webhooks]] where there were none take effect at the next restart "
                        "(their events are kept until then)")
    except ConfigError as exc:
        log.error("reload refused, the running configuration stays in force: %s", exc)
        return False
    for what, same in (("database", new.database_url == old.database_url), ("smtp", new.smtp == old.smtp),
                       ("instance", new.instance == old.instance),
                       ("mailboxes", new.mailboxes == old.mailboxes), ("lmtp", new.lmtp == old.lmtp),
                       ("metrics", new.metrics == old.metrics), ("oauth", new.oauth == old.oauth)):
        if not same:
            log.warning("reload: changes to [%s] take effect at the next restart", what)
    log.info("configuration reloaded from %s", path)
    return True


def _install_reload(callback: Callable[[], object]) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
        pass


def _remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
