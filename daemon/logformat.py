"""The log line's formats: text (today's), keyvalue and json; and the journal's priority prefix.

At a thousand messages a second the daemon writes a few thousand lines (opened, sent...);
``logging.Formatter.formatTime`` calls localtime and strftime for each, a third of what a
line costs the event loop, so every format here works its timestamp out once a second.
The text format is the standard formatter's, less control characters in the message.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from ticketd.daemon import logcontext
from ticketd.daemon.terminal import safe_line

FORMATS = ("text", "keyvalue", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# sd-daemon(3): "<N>" before a line on stderr is its syslog priority in the journal.
_PRIORITY = {logging.DEBUG: "<7>", logging.INFO: "<6>", logging.WARNING: "<4>", logging.ERROR: "<3>",
             logging.CRITICAL: "<2>"}
_LEVEL = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error",
          logging.CRITICAL: "critical"}
# What every record has; anything else on a record was passed with extra= and becomes a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_PLAIN_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str).encode
# A value with one of these is quoted: a parser would split it or misread it.
_NEEDS_QUOTES = re.compile(r'[ "=\\]')


class Formatter(logging.Formatter):
    """The text format: ``2026-05-01 12:00:00,123 INFO ticketd.pipeline: opened ...``.

    The standard formatter's lines, less control characters in the message, in fewer steps
    (it asks its style whether the format uses the time on every line).
    """

    def __init__(self, fmt: str = TEXT) -> None:
        super().__init__(fmt)
        self.fmt = fmt
        self.uses_time = "%(asctime)" in fmt
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        # A Message-ID or subject with a line break would start a line of its own, a fake one.
        record.message = text if text.isprintable() else safe_line(text)  # nearly always one C call
        if self.uses_time:
            record.asctime = self.formatTime(record)
        line = self.fmt % record.__dict__
        if record.exc_info or record.exc_text or record.stack_info:
            line = self._traceback(line, record)
        return line

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._stamp, record.msecs)

    def _traceback(self, line: str, record: logging.LogRecord) -> str:
        """The lines after the first, as logging.Formatter.format adds them."""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = line + ("" if line.endswith("\n") else "\n") + record.exc_text
        if record.stack_info:
            line = line + ("" if line.endswith("\n") else "\n") + self.formatStack(record.stack_info)
        return line


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=ticketd.pipeline mailbox=support inbound=12 ... msg="..."``.

    The keys in order: time, level, logger, the context (daemon.logcontext), extras passed
    with ``extra=``, msg, exc. ``stamp`` False leaves the time to whoever keeps one (the
    journal, syslog); ``ident`` starts each line with ``ticketd[PID]: `` as syslog wants.
    """

    def __init__(self, stamp: bool = True, ident: bool = False) -> None:
        super().__init__()
        self.stamp, self.ident = stamp, ident
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        line = f"ticketd[{record.process}]: " if self.ident else ""
        if self.stamp:
            line += f"ts={self.timestamp(record)} "
        line += f"level={_level(record)} logger={record.name}"
        for key, value in self.context(record).items():
            line += f" {key}={value_text(value)}"
        line += f" msg={value_text(record.getMessage())}"
        if record.exc_info or record.exc_text or record.stack_info:
            line += f" exc={value_text(self.exception(record))}"
        return line

    def context(self, record: logging.LogRecord) -> dict[str, Any]:
        """The scope's fields, and the record's extras (which win)."""
        fields = logcontext.current()
        if len(record.__dict__) > _PLAIN_SIZE:  # a cheap test first: most lines have no extra
            extra = record.__dict__.keys() - _STANDARD
            if extra:
                given = ((k, record.__dict__[k]) for k in sorted(extra))
                fields = {**fields, **{k: v for k, v in given if v is not None}}
        return fields

    def timestamp(self, record: logging.LogRecord) -> str:
        """ISO 8601, local time with its offset, to the millisecond."""
        second = int(record.created)
        if second != self._second:
            local = time.localtime(second)
            zone = time.strftime("%z", local)  # +0200; ISO 8601 (and RFC 3339) want +02:00
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S.%%03d", local) + (
                f"{zone[:3]}:{zone[3:]}" if len(zone) == 5 else zone)
        return self._stamp % record.msecs

    def exception(self, record: logging.LogRecord) -> str:
        """The traceback and stack of the record, as the text format shows them (several lines)."""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        parts = [record.exc_text or ""]
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(p for p in parts if p)


class JsonFormatter(KeyValueFormatter):
    """One JSON object a line, with the keys of the keyvalue format.

    ASCII only (``ensure_ascii``): a lone surrogate from undecodable mail would make a UTF-8
    stream raise, and U+2028 or bidi controls could mislead a reader; jq decodes it all back.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": self.timestamp(record)} if self.stamp else {}
        line["level"] = _level(record)
        line["logger"] = record.name
        line.update(self.context(record))
        line["msg"] = record.getMessage()
        if record.exc_info or record.exc_text or record.stack_info:
            line["exc"] = self.exception(record)
        return (f"ticketd[{record.process}]: " if self.ident else "") + _ENCODE(line)


class JournalFormatter(logging.Formatter):
    """Another format's line with the record's priority in front, for the journal (sd-daemon(3)).

    Every physical line gets it: a traceback's lines are then shown by ``journalctl -p err``
    with the error they belong to.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PRIORITY.get(record.levelno) or _priority(record.levelno)
        text = self.inner.format(record)
        return prefix + (text.replace("\n", "\n" + prefix) if "\n" in text else text)


def build(name: str, where: str) -> logging.Formatter:
    """The formatter of format ``name`` for a handler writing to ``where``: stream, journal or syslog.

    The journal and syslog keep a timestamp of their own; syslog wants ``ticketd[PID]: ``.
    """
    if name == "text":
        fmt = {"stream": TEXT, "journal": "%(levelname)s %(name)s: %(message)s",
               "syslog": "ticketd[%(process)d]: %(levelname)s %(name)s: %(message)s"}[where]
        formatter: logging.Formatter = Formatter(fmt)
    else:
        kind = JsonFormatter if name == "json" else KeyValueFormatter
        formatter = kind(stamp=where == "stream", ident=where == "syslog")
    return JournalFormatter(formatter) if where == "journal" else formatter


def value_text(value: Any) -> str:
    """A value of the keyvalue format: bare if it can be, else quoted with \\, " and controls escaped."""
    if type(value) is int:  # inbound ids, ticket numbers: the most common, and always bare
        return str(value)
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # nearly always: no control, line break or bidi character to escape
        if text and not _NEEDS_QUOTES.search(text):
            return text
        if '"' not in text and "\\" not in text:
            return f'"{text}"'
    # Backslashes first, so that the escapes safe_line writes (\n, \x1b) stay unambiguous.
    return '"' + safe_line(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _level(record: logging.LogRecord) -> str:
    """debug, info, warning, error, critical; a level of another name in one word ("level25")."""
    return _LEVEL.get(record.levelno) or record.levelname.lower().replace(" ", "")


def _priority(level: int) -> str:
    """A level between the named ones gets the priority of the named one below it."""
    below = [known for known in _PRIORITY if known <= level]
    return _PRIORITY[max(below)] if below else "<7>"
