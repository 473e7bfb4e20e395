"""`ticketd run` from spawn to the first fetch: IMAP first, the daemon's imports beside it.

Importing the daemon (the ORM, the pipeline, the templates) is most of a start-up, and a fetch
needs none of it: BODY.PEEK only reads, and what it brings is stored and processed as any
fetch's is, once the pipeline is there. So the parse workers are forked first (no thread exists
yet), a thread imports the daemon, and meanwhile the event loop logs in to every mailbox and
fetches its first batch from the position the database holds (storage.peek). That is SQLite's
case, where the instance lock (daemon.instance) makes every mailbox ours; on PostgreSQL a
mailbox is opened only once its lease is this instance's (daemon.leases), after the imports.

This module stays light: it is imported before the daemon, and its own imports are the wait.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING

from ticketd.daemon.imap import ImapSession
from ticketd.daemon.instance import identity, lock_database
from ticketd.daemon.sdnotify import Notifier

if TYPE_CHECKING:
    from ticketd.daemon.config import Config


def parse_pool(workers: int | None = None) -> Executor | None:
    """A process pool for MIME parsing, the CPU-heavy step, so it runs beside the event loop.

    Forked while no other thread exists (before the database or the import thread starts).
    The workers import the parser themselves, on the other core, while the daemon starts.
    """
    count = workers if workers is not None else min(4, (os.cpu_count() or 1) - 1)
    if count <= 0:
        return None
    pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(os.getpid(),))
    # With fork, the first submit forks every worker before it starts the pool's own thread
    # (concurrent.futures.process); the result need not be waited for.
    pool.submit(int)
    return pool


def _start_worker(parent: int) -> None:
    _die_with_parent(parent)
    import ticketd.daemon.prepare  # noqa: F401  (the parser: before the first batch arrives, not with it)


def _die_with_parent(parent: int) -> None:
    """A parse worker must not outlive a daemon killed with SIGKILL (Linux: PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own EOF handling must do
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


async def run(config: Config, once: bool, pool: Executor | None) -> int:
    """Begin every mailbox's session, import the daemon meanwhile, then run it with both.

    On SQLite the instance lock is taken first (InstanceLocked: another `run` has the database)
    and held until the run ends; the process's end drops it in any case.
    """
    try:
        held = lock_database(config.database_url, identity(config.instance.name if config.instance else None))
    except BaseException:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        raise
    try:
        return await _run(config, once, pool)
    finally:
        if held is not None:
            held.close()


async def _run(config: Config, once: bool, pool: Executor | None) -> int:
    from ticketd.storage.peek import folder_positions

    paused = gc.isenabled()
    gc.disable()  # as in cli._starting: the imports allocate much and free little
    # The import thread holds the GIL but for these slices: each IMAP reply waits up to one
    # for the loop to read it (5 ms by default; half a dozen replies come before the fetch).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    positions = folder_positions(config.database_url)  # before the thread: it would slow this
    # PostgreSQL: none begun before the lease keeper says which folders are ours (daemon.leases);
    # on SQLite the instance lock makes every folder ours, and peek knows where to start. An OAuth2
    # login needs its token from the database: that mailbox waits for the daemon's parts.
    early = [box for box in config.mailboxes if box.imap.auth == "password"] \
        if config.database_url.startswith("sqlite://") else []
    sessions = {box.name: ImapSession(box.imap) for box in early}
    for box in early:
        known = None if positions is None else positions.get(box.name, (None, 0))
        sessions[box.name].begin(known, box.batch_size, config.max_message_bytes)
    importing, thread = _import_daemon(config)
    try:
        app = await importing
    except BaseException:
        await asyncio.gather(*(s.close() for s in sessions.values()))
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        raise
    finally:
        thread.join()  # done by now; the database's thread starts only after it
        sys.setswitchinterval(switch)
        gc.freeze()
        if paused:
            gc.enable()
    if once:
        return await app.run_once(config, pool=pool, sessions=sessions)
    # systemd's socket and watchdog are read here, where the process starts, not in the daemon's parts.
    return await app.run_forever(config, pool=pool, sessions=sessions, notifier=Notifier.from_environ())


def _import_daemon(config: Config) -> tuple[asyncio.Future[ModuleType], threading.Thread]:
    """daemon.app imported, and the templates compiled (a broken one raises ConfigError), in a thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ModuleType] = loop.create_future()

    def settle(module: ModuleType | None, error: BaseException | None) -> None:
        if not done.cancelled():
            done.set_exception(error) if error is not None else done.set_result(module)  # type: ignore[arg-type]

    def work() -> None:
        from ticketd.daemon.quickimport import without_source_scans

        try:
            with without_source_scans():
                from ticketd.daemon import app
                from ticketd.daemon.responders import build_responders

                build_responders(config)
                if config.metrics is not None:  # prometheus_client, ~45 ms: here, beside the first fetch
                    importlib.import_module("ticketd.daemon.metrics_http")
        except BaseException as exc:  # handed to the loop, which raises it where it is awaited
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, app, None)

    thread = threading.Thread(target=work, name="ticketd-imports", daemon=True)
    thread.start()
    return done, thread
