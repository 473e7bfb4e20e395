"""Compressed RTF (MS-OXRTFCP) in winmail.dat: bounded, CRC-tolerant, never costing the files."""

from __future__ import annotations

import struct
import sys
import types

import pytest

from ticketd.daemon.parsers.rtf import MAX_RTF_BYTES, decompress
from ticketd.daemon.parsers.tnef import unpack
from tests.parsers.conftest import lzfu, tnef_blob

RTF = rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\pard Hello from Outlook\par Gr\'fc\'dfe}"


def _bomb(tokens: int) -> bytes:
    """Back-references of 17 bytes each (8x the input), claiming a 1 GB RTF."""
    write, refs = 207, []
    for _ in range(tokens):
        refs.append(struct.pack(">H", (((write + 100) % 4096) << 4) | 15))
        write = (write + 17) % 4096
    body = b"".join(b"\xff" + b"".join(refs[i : i + 8]) for i in range(0, len(refs), 8))
    body += b"\x01" + struct.pack(">H", write << 4)  # the end marker
    return struct.pack("<II4sI", len(body) + 12, 1 << 30, b"LZFu", 0) + body


def test_decompress_reads_a_stream_without_crc() -> None:
    # The CRC is a transport check; the compressed_rtf package refuses a 0 CRC, we read it.
    assert decompress(lzfu(RTF)) == RTF


def test_decompress_output_is_bounded_whatever_rawsize_claims() -> None:
    assert len(decompress(_bomb(80_000))) == MAX_RTF_BYTES


@pytest.mark.parametrize("blob", [b"", b"LZFu" * 3, struct.pack("<II4sI", 99, 99, b"ABCD", 0) + b"x"])
def test_decompress_refuses_what_is_not_compressed_rtf(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decompress(blob)


def test_broken_rtf_body_loses_only_the_body() -> None:
    tnef = tnef_blob({"a.txt": b"abc"}, rtf=RTF)
    broken = tnef.replace(b"LZFu", b"ABCD")  # an unknown compression type
    unpacked = unpack(broken)
    assert [a.filename for a in unpacked.attachments] == ["a.txt"]
    assert unpacked.text == ""


def test_rtf_body_does_not_depend_on_compressed_rtf_being_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # tnefparse's rtfbody decompresses with compressed_rtf when importable; we never let it.
    fake = types.ModuleType("compressed_rtf")

    def refuse(data: bytes) -> bytes:
        raise AssertionError("compressed_rtf used")

    fake.decompress = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compressed_rtf", fake)
    assert unpack(tnef_blob({"a.txt": b"abc"}, rtf=RTF)).text == "Hello from Outlook\nGrüße"
