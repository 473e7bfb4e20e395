"""The spam filter's spamd client: one SYMBOLS request over aiospamc, every failure as SpamUnavailable.

Apart from ``daemon.filters.spam`` so that aiospamc is imported only by a site whose pipeline
names the spam filter (``SpamFilter`` imports this module when it is built).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiospamc.client import Client
from aiospamc.connections import ConnectionManager, TcpConnectionManager, Timeout, UnixConnectionManager
from aiospamc.exceptions import AIOSpamcConnectionFailed, BadResponse, ClientException, ClientTimeoutException
from aiospamc.requests import Request
from aiospamc.responses import ResponseException

from ticketd.daemon.filters.spam import SpamSettings, SpamUnavailable


class Spamd:
    """spamd at the configured address; safe to use from concurrent checks."""

    def __init__(self, settings: SpamSettings) -> None:
        self.timeout = settings.timeout
        # The address and the timeout, built once; each check opens its own connection through it,
        # so concurrent checks share nothing. Not aiospamc's frontend functions (aiospamc.symbols):
        # they build an SSL context, ~20 ms of CPU on the event loop, on every call.
        timeout = Timeout(total=settings.timeout)
        self._manager: ConnectionManager
        if settings.socket:
            self._manager = UnixConnectionManager(Path(settings.socket), timeout=timeout)
        else:
            self._manager = TcpConnectionManager(settings.host, settings.port, timeout=timeout)
        self._where = settings.socket or f"{settings.host}:{settings.port}"

    async def symbols(self, raw: bytes) -> tuple[float, list[str]]:
        """Score and rule names from one SYMBOLS request."""
        connection = _OneConnection(self._manager)
        try:
            response = await Client(connection).request(Request("SYMBOLS", body=raw))
        except (TimeoutError, ClientTimeoutException):  # total timeout: asyncio.wait_for's TimeoutError
            raise SpamUnavailable(f"no answer from {self._where} within {self.timeout:g} s", "timeout") from None
        except AIOSpamcConnectionFailed as exc:
            raise SpamUnavailable(f"cannot connect to {self._where}: {_cause(exc)}", "connect") from None
        except BadResponse:
            raise SpamUnavailable(f"unreadable answer from {self._where}", "bad_answer") from None
        except ResponseException as exc:
            raise SpamUnavailable(f"{self._where} answered {exc.code} {_clean(str(exc))}", "refused") from None
        except (ClientException, OSError) as exc:
            raise SpamUnavailable(f"{self._where}: {_clean(str(exc)) or type(exc).__name__}", "other") from None
        finally:
            connection.close()
        spam = response.headers.spam
        if spam is None:
            raise SpamUnavailable(f"no Spam header in the answer from {self._where}", "bad_answer")
        body = response.body.decode("ascii", "replace")
        return float(spam.score), [name.strip() for name in body.split(",") if name.strip()]


class _OneConnection(ConnectionManager):
    """One request's connection to spamd, remembered so that it is closed even after a timeout.

    aiospamc cancels a timed-out exchange without closing its socket, which is then left to the
    garbage collector (and a ResourceWarning).
    """

    def __init__(self, spamd: ConnectionManager) -> None:
        super().__init__(spamd.connection_string, spamd.timeout)
        self._spamd = spamd
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, self._writer = await self._spamd.open()
        return reader, self._writer

    def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return _clean(str(cause)) if cause is not None else "connection failed"


def _clean(text: str) -> str:
    """One printable line of at most 200 characters (peer-supplied text goes into logs)."""
    return "".join(c if c.isprintable() else " " for c in text)[:200].strip()
