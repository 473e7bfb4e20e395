"""Every message of every corpus folder parses, or is refused as unreadable; nothing else."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ticketd.daemon.parsers import ParsedMessage, UnreadableMessage, parse_message
from tests.parsers.peer_expectations import CORPUS

# Expected outputs, licences and notes: not messages.
_NOT_MESSAGES = re.compile(
    r"(\.(json|xml|yml|md|bin|out)$|_decoded_|^README|^COPYING|LICENSE|^\.gitattributes$|-summary\.txt$)"
)
_MBOX = re.compile(r"\.mbox(\.txt)?$")
_CONTENT_LENGTH = re.compile(rb"^Content-Length:[ \t]*([0-9]+)", re.MULTILINE | re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NEXT_FROM = re.compile(rb"\r?\n(?=From )")

TIMES: dict[str, float] = {}


def corpus_files() -> list[Path]:
    files = (path for path in CORPUS.rglob("*") if path.is_file())
    return sorted(path for path in files if not _NOT_MESSAGES.search(path.name))


def split_mbox(data: bytes) -> Iterator[bytes]:
    """Messages of an mbox, honouring Content-Length (bodies hold unescaped "From " lines)."""
    pos = 0
    while pos < len(data):
        start = data.find(b"\n", pos) + 1 or len(data)  # after the "From " separator line
        headers_end = _BLANK_LINE.search(data, start)
        length = _CONTENT_LENGTH.search(data, start, headers_end.start()) if headers_end else None
        if headers_end and length:
            end = headers_end.end() + int(length.group(1))
        else:
            following = _NEXT_FROM.search(data, start)
            end = following.start() if following else len(data)
        yield data[start:end]
        next_from = data.find(b"From ", end)
        pos = next_from if next_from >= 0 else len(data)


def messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return list(split_mbox(data)) if _MBOX.search(path.name) else [data]


@pytest.fixture(scope="module", autouse=True)
def timing_summary(summary: Callable[[str], None]) -> Iterator[None]:
    yield
    if TIMES:
        slowest = sorted(TIMES.items(), key=lambda item: -item[1])[:5]
        lines = [f"  {seconds * 1000:7.1f} ms  {name}" for name, seconds in slowest]
        mean = sum(TIMES.values()) / len(TIMES) * 1000
        summary(f"corpus smoke: {len(TIMES)} files, mean {mean:.2f} ms per file; slowest:\n" + "\n".join(lines))


def test_corpus_has_messages() -> None:
    assert len(corpus_files()) > 400, f"corpus missing or incomplete at {CORPUS}"


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: str(path.relative_to(CORPUS)))
def test_message_parses_or_is_unreadable(path: Path) -> None:
    started = time.perf_counter()
    for raw in messages(path):
        try:
            parsed = parse_message(raw)
        except UnreadableMessage as exc:
            assert str(exc), "UnreadableMessage must say why"
            continue
        assert isinstance(parsed, ParsedMessage)
        assert isinstance(parsed.text, str) and isinstance(parsed.subject, str)
        assert "\r" not in parsed.text
    TIMES[str(path.relative_to(CORPUS))] = time.perf_counter() - started
