"""The LMTP listener's life: bind (Unix socket or loopback port), serve, stop with grace, tidy up."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import weakref
from pathlib import Path

from ticketd.daemon.config_lmtp import LmtpConfig, group_id
from ticketd.daemon.lmtp import LmtpHandler, LmtpServer
from ticketd.daemon.lmtp_queue import Backlog, drain
from ticketd.daemon.lmtp_store import GroupCommit
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.terminal import safe_line
from ticketd.storage.models import InboundMessage, InboundStatus

log = logging.getLogger("ticketd.lmtp")

# How long a session in the middle of a message may take to finish once we stop.
FINISH_GRACE = 5.0


class ListenError(Exception):
    """The listener cannot start; the text says why."""


class LmtpService:
    """Accepts LMTP sessions and hands what they store to the pipeline, in order."""

    def __init__(self, config: LmtpConfig, processor: Processor, finish_grace: float = FINISH_GRACE) -> None:
        self.config = config
        self.processor = processor
        self.finish_grace = finish_grace
        self.backlog = Backlog()
        self.store = GroupCommit(processor, self._stored)
        self.handler = LmtpHandler(lambda: processor.config, self.store)
        self.hostname = socket.gethostname()  # aiosmtpd would look up the FQDN on every connection
        self._sessions: weakref.WeakSet[LmtpServer] = weakref.WeakSet()
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None  # of our socket file, so we remove only ours

    def _stored(self, stored: list[tuple[str, InboundMessage]]) -> None:
        """Committed rows: counted (once a group), then queued for the pipeline."""
        metrics = self.processor.metrics
        for name, row in stored:
            metrics.lmtp[name] += 1
            if row.status == InboundStatus.QUARANTINED:  # over the size limit: never processed
                metrics.quarantined["too_large"] += 1
        self.backlog.add(stored)

    async def start(self) -> None:
        """Bind and listen; ListenError (a clear line) if that cannot be done."""
        if not logging.getLogger("ticketd").isEnabledFor(logging.DEBUG):
            # aiosmtpd logs every command at INFO, peer-supplied addresses unescaped.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            self._server = await (self._bind_unix() if self.config.is_unix else self._bind_tcp())
        except OSError as exc:
            raise ListenError(f"lmtp.listen {self.config.listen}: {exc.strerror or exc}") from None
        self.store.start()
        log.info("LMTP listening on %s", safe_line(self.config.listen))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``; then stop accepting, let messages in hand finish, process the rest."""
        processing = asyncio.create_task(drain(self.processor, self.backlog), name="lmtp-process")
        try:
            await stop.wait()
            await self._stop_accepting()
            await self.store.close()
            log.info("LMTP stopped: %d message(s) stored in %d transaction(s)", self.store.messages,
                     self.store.commits)
            self.backlog.close()
            await processing
        finally:
            self.store.abort()
            if not processing.done():  # cancelled at the stop deadline: the sweep finishes the rest
                processing.cancel()
                await asyncio.gather(processing, return_exceptions=True)
            self._close_listener()

    async def _stop_accepting(self) -> None:
        self._close_listener()
        self.handler.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_grace
        while any(_mid_message(s) for s in list(self._sessions)) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self._sessions):
            if session.transport is not None:  # the MTA sends what it did not hear 250 for again
                session.transport.close()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        path = self.config.path
        if path is not None and self._inode is not None:
            try:
                st = path.lstat()
                if (st.st_dev, st.st_ino) == self._inode:
                    path.unlink()
            except FileNotFoundError:
                pass
            self._inode = None

    def _session(self) -> LmtpServer:
        session = LmtpServer(self.handler, self.processor.config.max_message_bytes, self.hostname)
        self._sessions.add(session)
        return session

    async def _bind_tcp(self) -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(
            self._session, self.config.host, self.config.port, reuse_address=True)

    async def _bind_unix(self) -> asyncio.AbstractServer:
        """Bind under a temporary name, set mode and group, then rename into place.

        The socket is never reachable under its real name with the wrong permissions, and a
        stale socket from a crash is replaced in one step.
        """
        path = self.config.path
        assert path is not None
        _refuse_if_in_use(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            temporary.unlink(missing_ok=True)
            sock.bind(str(temporary))
            os.chmod(temporary, self.config.socket_mode)
            if self.config.socket_group is not None:
                _give_to_group(temporary, self.config.socket_group)
            os.rename(temporary, path)
        except BaseException:
            sock.close()
            temporary.unlink(missing_ok=True)
            raise
        st = path.lstat()
        self._inode = (st.st_dev, st.st_ino)
        return await asyncio.get_running_loop().create_unix_server(self._session, sock=sock)


def _refuse_if_in_use(path: Path) -> None:
    """A socket file nobody listens on is left from a crash; a live one belongs to another process."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"lmtp.listen {path}: exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("replacing the stale LMTP socket %s", safe_line(str(path)))
        return
    except OSError as exc:
        raise ListenError(f"lmtp.listen {path}: cannot tell whether another process listens on it: "
                          f"{exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ListenError(f"lmtp.listen {path}: another process is listening on it")


def _give_to_group(path: Path, group: str) -> None:
    try:
        os.chown(path, -1, group_id(group))
    except PermissionError:
        raise ListenError(f"lmtp.socket_group {group}: the socket cannot be given to this group; "
                          f"the daemon's user must be a member of it") from None


def _mid_message(session: LmtpServer) -> bool:
    """Between MAIL and the reply to DATA (a message in hand), on a connection still open."""
    envelope = session.envelope
    return session.transport is not None and envelope is not None and bool(envelope.mail_from)
