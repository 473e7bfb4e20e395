"""A thin IMAP session over aioimaplib: connect, select, fetch by UID, after-actions, IDLE."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from aioimaplib import aioimaplib

from ticketd.daemon.config import ImapConfig, Peer

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager

log = logging.getLogger("ticketd.imap")

_FETCH_LINE = re.compile(rb"^(\d+) FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_COUNT = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE)$")


class ImapError(Exception):
    """The server refused a command or the connection failed; the text says which."""

    reported = False  # logged already (daemon.oauth's one line per incident): the worker retries quietly


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    size: int
    raw: bytes  # headers only when the message was over the size limit


def tls_context(peer: Peer) -> ssl.SSLContext:
    """Certificate-checking TLS unless the admin turned verification off."""
    context = ssl.create_default_context(cafile=peer.ca_file)
    if not peer.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def uid_set(uids: Iterable[int]) -> str:
    """Compress sorted UIDs into an IMAP sequence set (1:3,7,9:10)."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, showing us every untagged line, whichever command it came with.

    aioimaplib passes EXISTS on only while IDLE runs, and even then drops it when it shares a
    packet with IDLE's tagged OK; with any other command it logs and ignores it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Callable[[Exception | None], None] | None,
                 on_untagged: Callable[[bytes], None]) -> None:
        super().__init__(loop, conn_lost_cb)
        self.on_untagged = on_untagged

    sasl_reply: bytes | None = None  # sent when AUTHENTICATE gets a challenge (daemon.imap_oauth)

    def _continuation(self, line: bytes) -> None:
        # A bearer login refused is answered with a challenge that awaits one reply (RFC 7628
        # 3.2.3); aioimaplib would wait for the tagged answer until its timeout instead.
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE" and self.sasl_reply is not None:
            self.transport.write(self.sasl_reply + b"\r\n")
            return
        super()._continuation(line)

    def _untagged_response(self, line: bytes) -> aioimaplib.Command:
        self.on_untagged(line)
        return super()._untagged_response(line)

    def data_received(self, d: bytes) -> None:
        # aioimaplib's own, less its ``log.debug('Received : %s' % d)``: formatted before the
        # logger is asked, that repr of every packet (up to 256 KiB of message) was the largest
        # single cost of a fetch (py-spy: ~3 % of the daemon's CPU), with debug logging off.
        try:
            self._handle_responses(self.incomplete_line + d, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib's client over `_Protocol`."""

    def __init__(self, on_untagged: Callable[[bytes], None], **kwargs: object) -> None:
        self.on_untagged = on_untagged  # before super(): it calls create_client
        super().__init__(**kwargs)

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb, self.on_untagged)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context))


class ImapSession:
    """One logged-in connection with one selected folder."""

    def __init__(self, config: ImapConfig, tokens: TokenManager | None = None) -> None:
        self.config = config
        self.tokens = tokens  # daemon.oauth: the access token of an auth = "oauth2" login
        self.client: aioimaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.exists = 0  # the message count, as the server last told it
        self.lost = asyncio.Event()
        # Set when the count changes, cleared as each UID SEARCH starts: set means the folder may
        # hold mail that no search has seen.
        self.news = asyncio.Event()
        self._early: asyncio.Future[None] | None = None  # begin()'s work, until open() takes it
        self._fetched: tuple[int, dict[int, FetchedMessage]] | None = None  # (max_bytes, by UID)

    def begin(self, known: tuple[int | None, int] | None, batch: int, max_bytes: int) -> None:
        """Log in and select now, in the background; given ``known``, the database's (UIDVALIDITY,
        last UID) of this folder, also search and fetch up to ``batch`` new messages.

        open() then waits for this instead of connecting, and the first fetch() takes what it
        fetched. The bytes of a UID never change under one UIDVALIDITY (RFC 3501 2.3.1.1), so
        they stay good whatever the worker reads from the database afterwards; and BODY.PEEK
        marks nothing, so fetching before the database is open acts on nothing.
        """
        self._early = asyncio.ensure_future(self._begin(known, batch, max_bytes))

    async def _begin(self, known: tuple[int | None, int] | None, batch: int, max_bytes: int) -> None:
        await self._connect()
        if known is None:
            return
        uidvalidity, last_uid = known
        # Another UIDVALIDITY: the worker starts the folder over from UID 0 (fetcher.sync).
        uids = (await self.uids_after(last_uid if uidvalidity == self.uidvalidity else 0))[:batch]
        if uids:
            self._fetched = (max_bytes, {m.uid: m for m in await self.fetch(uids, max_bytes)})

    async def open(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            await early  # its failure is open()'s own: the worker reports it and retries as ever
            return
        await self._connect()

    async def _connect(self) -> None:
        cfg = self.config
        context = tls_context(cfg) if cfg.security == "tls" else None
        client = _Client(self._count, host=cfg.host, port=cfg.port, timeout=cfg.timeout, ssl_context=context,
                         conn_lost_cb=lambda exc: self.lost.set())
        self.client = client
        await client.wait_hello_from_server()
        if cfg.security == "starttls":
            await self._starttls()
        if cfg.auth == "oauth2":
            from ticketd.daemon.imap_oauth import authenticate

            self._check(await authenticate(client, cfg, self.tokens), f"AUTHENTICATE {cfg.mechanism.upper()}")
        else:
            assert cfg.username is not None and cfg.password is not None
            self._check(await client.login(cfg.username, cfg.password.reveal()), "LOGIN")
        await self.select()

    async def _starttls(self) -> None:
        # aioimaplib has no STARTTLS of its own: run the command, then upgrade the transport.
        client = self._client()
        if not client.has_capability("STARTTLS"):
            raise ImapError("server does not offer STARTTLS (security = \"starttls\")")
        protocol = client.protocol
        response = await protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
        self._check(response, "STARTTLS")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(protocol.transport, protocol, tls_context(self.config),
                                         server_hostname=self.config.host)
        protocol.transport = transport
        await protocol.capability()  # RFC 3501 6.2.1: capabilities must be asked again after TLS

    async def select(self) -> None:
        response = await self._client().select(self._quoted(self.config.folder))
        self._check(response, f"SELECT {self.config.folder}")
        for line in response.lines:
            if isinstance(line, (bytes, bytearray)):
                if match := _UIDVALIDITY.search(line):
                    self.uidvalidity = int(match.group(1))
        if not self.uidvalidity:
            raise ImapError(f"SELECT {self.config.folder}: server sent no UIDVALIDITY")

    def _count(self, line: bytes) -> None:
        """Follow the message count through every response (RFC 3501 7.3.1, 7.4.1).

        Servers announce new mail with any command, once (RFC 3501 5.2), often after a SEARCH's
        results; only a changed count is news, so a server repeating EXISTS cannot loop us.
        RECENT adds nothing: new mail always changes the EXISTS count too.
        """
        if match := _COUNT.match(line):
            number = int(match.group(1))
            if match.group(2) == b"EXPUNGE":
                self.exists -= 1
            elif number != self.exists:
                self.exists = number
                self.news.set()

    @property
    def supports_idle(self) -> bool:
        return self._client().has_capability("IDLE")

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending; never relies on \\Seen."""
        self.news.clear()  # before: an EXISTS sent after this search's results must stay news
        response = await self._client().uid_search(f"UID {last_uid + 1}:*", charset=None)
        self._check(response, "UID SEARCH")
        uids: list[int] = []
        for line in response.lines[:-1]:  # aioimaplib strips the "SEARCH" word; the last line is the status
            uids.extend(int(x) for x in bytes(line).split() if x.isdigit())
        # "n:*" always matches the highest UID even when it is below n (RFC 3501 6.4.8).
        return sorted(uid for uid in set(uids) if uid > last_uid)

    async def sizes(self, uids: list[int]) -> dict[int, int]:
        items = await self._fetch(uids, "(UID RFC822.SIZE)")
        return {uid: size for uid, size, _ in items}

    async def fetch(self, uids: list[int], max_bytes: int) -> list[FetchedMessage]:
        """Bodies (BODY.PEEK[]: marks nothing) of ``uids``; only headers of oversized ones."""
        early, self._fetched = self._fetched, None  # begin()'s messages serve the first fetch only
        if early is None or early[0] != max_bytes:
            return await self._fetch_now(uids, max_bytes)
        have = early[1]
        rest = [uid for uid in uids if uid not in have]
        found = [have[uid] for uid in uids if uid in have] + (await self._fetch_now(rest, max_bytes) if rest else [])
        return sorted(found, key=lambda m: m.uid)

    async def _fetch_now(self, uids: list[int], max_bytes: int) -> list[FetchedMessage]:
        sizes = await self.sizes(uids)
        small = [uid for uid in uids if sizes.get(uid, 0) <= max_bytes]
        large = [uid for uid in uids if uid in sizes and uid not in small]
        found: dict[int, FetchedMessage] = {}
        for uid, size, raw in await self._fetch(small, "(UID RFC822.SIZE BODY.PEEK[])"):
            found[uid] = FetchedMessage(uid, size, raw)
        for uid, size, raw in await self._fetch(large, "(UID RFC822.SIZE BODY.PEEK[HEADER])"):
            found[uid] = FetchedMessage(uid, size, raw)
        return [found[uid] for uid in sorted(found)]

    async def _fetch(self, uids: list[int], items: str) -> list[tuple[int, int, bytes]]:
        if not uids:
            return []
        response = await self._client().uid("fetch", uid_set(uids), items)
        self._check(response, "UID FETCH")
        return _parse_fetch(response.lines)

    async def mark_seen(self, uids: list[int]) -> None:
        self._check(await self._client().uid("store", uid_set(uids), "+FLAGS.SILENT (\\Seen)"), "UID STORE")

    async def delete(self, uids: list[int]) -> None:
        client = self._client()
        self._check(await client.uid("store", uid_set(uids), "+FLAGS.SILENT (\\Deleted)"), "UID STORE")
        if client.has_capability("UIDPLUS"):
            # UID EXPUNGE removes only our messages, not others a person marked deleted.
            self._check(await client.uid("expunge", uid_set(uids)), "UID EXPUNGE")
        else:
            self._check(await client.expunge(), "EXPUNGE")

    async def move(self, uids: list[int], folder: str) -> None:
        client = self._client()
        target = self._quoted(folder)
        if client.has_capability("MOVE"):
            response = await client.uid("move", uid_set(uids), target)
            if response.result == "OK":
                return
            if b"TRYCREATE" not in b" ".join(bytes(x) for x in response.lines):
                self._check(response, f"UID MOVE {folder}")
            self._check(await client.create(target), f"CREATE {folder}")
            self._check(await client.uid("move", uid_set(uids), target), f"UID MOVE {folder}")
            return
        self._check(await client.uid("copy", uid_set(uids), target), f"UID COPY {folder}")
        await self.delete(uids)

    async def wait_for_news(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        """IDLE until the server reports new mail, ``stop`` is set or ``timeout`` passes; True on news.

        Returns at once if news came with an earlier response: the server announces a message
        once, so an IDLE begun after that would sit until the next mail or the renewal.
        """
        if self.news.is_set():
            return True
        client = self._client()
        idle = await client.idle_start(timeout=timeout + 60)  # ended by our timeout, not aioimaplib's
        try:
            # Timing out is the renewal RFC 2177 asks for: servers may drop an IDLE after 30 minutes.
            await _any_set(timeout, self.news, self.lost, *([stop] if stop else []))
        finally:
            if not self.lost.is_set():
                # A push between this DONE and the tagged OK still sets ``news`` (see _Protocol).
                client.idle_done()
                await asyncio.wait_for(idle, min(self.config.timeout, 5.0))
            _discard(client.protocol.idle_queue)  # pushes are read through ``news``; none pile up here
        if self.lost.is_set():
            raise ImapError("connection lost")
        return self.news.is_set()

    async def close(self) -> None:
        early, self._early = self._early, None
        if early is not None:  # begun but never opened: stop it, and retrieve its failure if any
            early.cancel()
            await asyncio.gather(early, return_exceptions=True)
        self._fetched = None
        client, self.client = self.client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.logout(), 5)
        except Exception:  # the connection may already be gone; closing must not fail
            pass
        transport = client.protocol.transport if client.protocol else None
        if transport is not None:
            transport.close()

    def _client(self) -> aioimaplib.IMAP4:
        if self.client is None:
            raise ImapError("not connected")
        return self.client

    @staticmethod
    def _quoted(name: str) -> str:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    @staticmethod
    def _check(response: aioimaplib.Response, what: str) -> None:
        if response.result != "OK":
            text = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
            raise ImapError(f"{what} failed: {response.result} {text[:200]}")


async def _any_set(timeout: float, *events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` passes."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _discard(queue: asyncio.Queue[object]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _parse_fetch(lines: list[bytes | bytearray]) -> list[tuple[int, int, bytes]]:
    """Turn aioimaplib's FETCH lines into (uid, size, literal) triples."""
    results: list[tuple[int, int, bytes]] = []
    current: list[object] | None = None
    for line in lines:
        if isinstance(line, bytearray):  # a literal always follows its FETCH line
            if current is not None:
                current[2] = bytes(line)
            continue
        if _FETCH_LINE.match(line):
            if current is not None:
                results.append(_fetch_item(current))
            current = [line, b"", b""]
        elif current is not None:
            current[1] = bytes(current[1]) + line  # type: ignore[operator]
    if current is not None:
        results.append(_fetch_item(current))
    return [item for item in results if item[0] > 0]


def _fetch_item(parts: list[object]) -> tuple[int, int, bytes]:
    text = bytes(parts[0]) + b" " + bytes(parts[1])  # type: ignore[arg-type]
    uid = _UID.search(text)
    size = _SIZE.search(text)
    return (int(uid.group(1)) if uid else 0, int(size.group(1)) if size else 0, bytes(parts[2]))  # type: ignore[arg-type]
