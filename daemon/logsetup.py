"""Where log lines go and in which format (``[daemon] log_target``, ``log_format``); what never goes.

Never a password: aioimaplib logs each command it sends at debug level, LOGIN with its
arguments (it masks the password, but only as given, not as quoted on the wire), so it stays
at WARNING even with ``-v``, and a filter on its logger masks LOGIN and AUTHENTICATE lines
should anyone lower that. aiosmtplib logs nothing; aiospamc's loguru is disabled by aiospamc.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING

from ticketd.daemon.logformat import build

if TYPE_CHECKING:
    from ticketd.daemon.config import Config

# Libraries whose debug lines would flood the log (or, aioimaplib's, show a login): WARNING
# at the most verbose.
NOISY = ("aioimaplib", "tortoise", "aiosqlite", "asyncio", "httpx", "httpcore")  # httpx: a line per token request
# aioimaplib's "Sending : b'A1 LOGIN user \"secret\"\r\n'": everything after the command's name.
_CREDENTIALS = re.compile(r"(\b(?:LOGIN|AUTHENTICATE)\b).*", re.IGNORECASE | re.DOTALL)


class RedactLogin(logging.Filter):
    """Masks what follows LOGIN or AUTHENTICATE in a line: the user, the password, a SASL payload."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = _CREDENTIALS.sub(r"\1 ***", text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def configure(config: Config, verbose: bool, one_line_stderr: bool = False) -> None:
    """Logs go where the config says; ingest (``one_line_stderr``) keeps stderr for its one line."""
    level = logging.DEBUG if verbose else getattr(logging, config.log_level.upper())
    handler, where = _handler(config.log_target, one_line_stderr)
    handler.setFormatter(build(config.log_format, where))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    lean_records()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    guard_libraries()


def lean_records() -> None:
    """Leave out of each log record what no format of ours prints (logformat: the process id, never a
    source line or a thread): the logging HOWTO's "Optimization" switches. Finding the caller's frame
    was a fifth of the cost of a line, and the daemon writes one for every mail it sends."""
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller lookup (funcName, lineno)
    logging.logThreads = False
    logging.logMultiprocessing = False


def guard_libraries() -> None:
    """Mask logins in aioimaplib's lines, whatever level its logger is given (once per process)."""
    guard = logging.getLogger("aioimaplib.aioimaplib")  # the module's own logger: filters do not inherit
    if not any(isinstance(f, RedactLogin) for f in guard.filters):
        guard.addFilter(RedactLogin())


def _handler(target: str, one_line_stderr: bool) -> tuple[logging.Handler, str]:
    """The handler for ``target`` and what it writes to: "stream", "journal" or "syslog"."""
    if target == "syslog":
        from logging.handlers import SysLogHandler

        # It sends each line with the record's level as the syslog priority (mapPriority).
        return SysLogHandler(address="/dev/log"), "syslog"
    if target != "stderr":
        return logging.FileHandler(target, encoding="utf-8"), "stream"
    if one_line_stderr:  # ingest under an MTA: its one line per failure is printed by cli._short_error
        return logging.NullHandler(), "stream"
    return logging.StreamHandler(sys.stderr), "journal" if on_journal() else "stream"


def on_journal(environ: dict[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` is the stream systemd connected to the journal (systemd.exec(5), $JOURNAL_STREAM).

    Compared with the descriptor itself, not just present: a child started from the unit
    (a shell, ``ticketd tickets list | less``) inherits the variable with another stderr.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(fd)
    except OSError:
        return False
    return bool(value) and value == f"{stat.st_dev}:{stat.st_ino}"
