"""daemon/quickimport.py: Tortoise's own classes skip the source scan; everything else is untouched."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from bench.child import child_env
from ticketd.daemon.quickimport import without_source_scans


def test_only_tortoise_models_lose_their_source_and_only_inside() -> None:
    class Mine:
        pass

    import tortoise.models

    with without_source_scans():
        assert "class Mine" in inspect.getsource(Mine)
        with pytest.raises(OSError):
            inspect.getsource(tortoise.models.Model)
    assert "class Model" in inspect.getsource(tortoise.models.Model)


def test_the_daemon_started_reads_no_source_of_tortoises() -> None:
    # A fresh interpreter, started as `ticketd` starts: count the source reads Tortoise asks for.
    probe = """
import inspect
real, seen = inspect.getsource, []
def counting(obj):
    seen.append(getattr(obj, "__module__", ""))
    return real(obj)
inspect.getsource = counting
from ticketd.daemon import cli
with cli._starting():
    import ticketd.daemon.app
print(",".join(m for m in seen if m.startswith("tortoise")) or "none")
"""
    out = subprocess.run([sys.executable, "-c", probe], env=child_env(), capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "none"
