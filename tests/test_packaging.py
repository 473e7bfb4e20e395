"""The distribution as an admin installs it: a wheel built from this checkout, into a clean virtual environment.

It must put nothing at the top level of site-packages but ``ticketd`` (python-daemon owns
``daemon``; ``storage`` and ``templates`` are names anyone may use), carry its templates, and run.
The dependencies come from this checkout's own environment on PYTHONPATH, because tests reach
no network; the venv's site-packages holds the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.support.daemon import PROJECT, write_config

IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def build_wheel(directory: Path) -> Path:
    """A wheel of a copy of the checkout (the build writes build/ and egg-info beside the sources)."""
    source = directory / "source"
    shutil.copytree(PROJECT, source, symlinks=True, ignore=IGNORED)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(directory / "dist"), str(source)], capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr.decode()
    [wheel] = (directory / "dist").glob("ticketd-*.whl")
    return wheel


def test_the_wheel_installs_only_ticketd_and_runs_from_a_clean_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    version = wheel.name.split("-")[1]
    assert {name.split("/")[0] for name in names} == {"ticketd", f"ticketd-{version}.dist-info"}
    assert "ticketd/templates/acknowledgement.txt.j2" in names and "ticketd/daemon/cli.py" in names
    assert not any(name.startswith(("ticketd/tests/", "ticketd/bench/", "ticketd/devtools/")) for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                                "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, timeout=300)
    assert installed.returncode == 0, installed.stderr.decode()
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, check=True).stdout.decode().strip())
    assert sorted(p.name for p in site.iterdir() if not p.name.startswith(("_", "distutils-precedence"))) == \
        ["ticketd", f"ticketd-{version}.dist-info"]

    env = {**os.environ, "PYTHONPATH": sysconfig.get_path("purelib")}  # the dependencies, not this checkout
    config = write_config(tmp_path / "etc", 10143, 2525, [("support", "support@example.test")])
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import ticketd.daemon.cli as c; print(c.__file__)"],
                           capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr.decode()
    assert where.stdout.decode().strip().startswith(str(site))  # the wheel's copy, not the checkout
    checked = subprocess.run([str(venv / "bin" / "ticketd"), "-c", str(config), "check-config"], capture_output=True,
                             env=env, cwd=tmp_path, timeout=120)
    assert checked.returncode == 0, checked.stderr.decode()
