"""systemd/ticketd.service as systemd reads it: `systemd-analyze verify` and `security`.

verify checks that every Exec*= program exists, and /opt/ticketd (the documented install) does
not exist here; the test verifies a copy in which that path is this environment's own
`ticketd` (the console script of the venv running the tests), everything else unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

from ticketd.daemon.config import load_config
from ticketd.daemon.readiness import READY_WAIT
from tests.support.daemon import PROJECT, write_config

UNIT = PROJECT / "systemd" / "ticketd.service"
INSTALLED = "/opt/ticketd/bin/ticketd"

# `systemd-analyze security --offline=yes` gave 1.2 (OK) with systemd 252; 0 is best, 10 worst.
EXPOSURE_MAX = 1.5
# The checks the unit does not pass, each on purpose: ticketd talks to IMAP and SMTP servers
# anywhere (network, AF_INET, no IP allow list), to Unix sockets (journal, LMTP, notify), runs
# from the host's file system, and an LMTP socket_group needs the real group (no PrivateUsers).
# ProtectClock= grants read access to the RTC device.
ACCEPTED = {"PrivateNetwork", "RestrictAddressFamilies_AF_INET_INET6", "IPAddressDeny", "RestrictAddressFamilies_AF_UNIX",
            "RootDirectoryOrRootImage", "PrivateUsers", "DeviceAllow"}


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("systemd-analyze")
    assert program is not None, "systemd-analyze is missing: run scripts/install-system-deps.sh (package systemd)"
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=120)


def local_copy(directory: Path, text: str | None = None) -> Path:
    """The unit under its own name, with the installed ticketd replaced by this venv's."""
    ticketd = Path(sysconfig.get_path("scripts")) / "ticketd"
    assert ticketd.is_file(), f"{ticketd} is missing: pip install -e . into this venv"
    copy = directory / "ticketd.service"
    copy.write_text((text or UNIT.read_text()).replace(INSTALLED, str(ticketd)))
    return copy


def unit_value(key: str) -> str:
    found = re.findall(rf"^{key}=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert len(found) == 1, (key, found)
    return found[0]


def test_the_unit_verifies_without_a_word(tmp_path: Path) -> None:
    done = analyze("verify", str(local_copy(tmp_path)))
    # A misspelt key is only a warning (exit 0): silence is the test.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_would_report_a_misspelt_key(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("NotifyAccess=main", "NotfyAccess=main")
    done = analyze("verify", str(local_copy(tmp_path, broken)))
    assert "Unknown key" in done.stderr and "NotfyAccess" in done.stderr


def test_the_exposure_score_stays_low_and_every_check_missed_is_one_chosen(tmp_path: Path) -> None:
    unit = str(local_copy(tmp_path))
    done = analyze("security", "--offline=yes", unit)
    assert done.returncode == 0, done.stderr
    score = re.search(r"Overall exposure level for ticketd\.service: (\d+\.\d+)", done.stdout)
    assert score is not None, done.stdout
    assert float(score.group(1)) <= EXPOSURE_MAX, done.stdout
    checks = json.loads(analyze("security", "--offline=yes", "--json=short", unit).stdout)
    assert {c["json_field"] for c in checks if not c["set"]} == ACCEPTED


def test_the_unit_timeouts_fit_what_the_daemon_does(tmp_path: Path) -> None:
    assert unit_value("Type") == "notify" and unit_value("NotifyAccess") == "main"
    assert float(unit_value("TimeoutStartSec")) > READY_WAIT + 30  # imports and the database come first
    config = load_config(write_config(tmp_path, 10143, 2525, [("s", "s@example.test")]))
    # Stopping: the intake gets stop_grace, the sender stop_grace again, then the outbox drain.
    assert float(unit_value("TimeoutStopSec")) > 2 * config.stop_grace + config.outbox_drain
    assert unit_value("WatchdogSec").removesuffix("s").isdigit()
    assert unit_value("ExecStart") == f"{INSTALLED} run"
    assert INSTALLED in (PROJECT / "README.md").read_text()  # the install the README documents
