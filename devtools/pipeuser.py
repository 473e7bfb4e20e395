"""The account Postfix's pipe runs as, and a Python it can run with the checkout's code."""

from __future__ import annotations

import fcntl
import hashlib
import json
import pwd
import shutil
import subprocess
import tomllib
from pathlib import Path

from devtools._process import find_program

# pipe(8) runs no command as root or as default_privs (nobody): the pipe needs its own account.
PIPE_USER = "ticketd-pipe"
# Debian's own Python: root's pyenv build (and the repo's .venv made from it) lives under
# /root, which the pipe user cannot enter.
SYSTEM_PYTHON = "/usr/bin/python3"
VENV_CACHE = Path("/var/tmp")


def ensure_pipe_user(name: str = PIPE_USER) -> None:
    """Create the system account the pipe runs as, unless it exists (root only)."""
    if name in {user.pw_name for user in pwd.getpwall()}:
        return
    done = subprocess.run(
        [find_program("useradd"), "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, timeout=30)
    # Exit 9: another test process created it in the meantime, which is just as good.
    if done.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed: {done.stderr.decode(errors='replace')}")


def pipe_python(repo: Path, dest: Path, user: str = PIPE_USER) -> Path:
    """An interpreter the pipe user can run, with the checkout's current code importable.

    The dependencies sit in a venv made from Debian's Python, built once per pyproject.toml
    (they change rarely); the code under test changes between runs, so its packages are
    copied afresh into `dest` and put on PYTHONPATH by the returned launcher script:
    `[launcher, "-m", "ticketd.daemon", "-c", CONFIG, "ingest"]` is a pipe argv that works.
    """
    ensure_pipe_user(user)  # the check below runs as him, whether or not a Postfix made him yet
    repo = Path(repo).resolve()
    venv = _pipe_venv(repo / "pyproject.toml")
    code = Path(dest).resolve() / "code"
    packages = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in {name.split(".")[0] for name in packages}:
        shutil.copytree(repo / package, code / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    launcher = code.parent / "python"
    # PYTHONSAFEPATH: the pipe's working directory must not shadow the copied packages;
    # no bytecode: the copy is read-only to the pipe user.
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={code} PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1 "
                        f'exec {venv}/bin/python "$@"\n')
    _make_world_readable(code.parent)
    launcher.chmod(0o755)
    check = subprocess.run([find_program("runuser"), "-u", user, "--", str(launcher), "-c",
                            "import ticketd.daemon.cli"], capture_output=True, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"{user} cannot import ticketd with {launcher}:\n"
                           f"{check.stderr.decode(errors='replace')}")
    return launcher


def _pipe_venv(pyproject: Path) -> Path:
    """The cached venv with the project's dependencies; built under a lock by whoever comes first."""
    # Keyed on the dependency list alone: other edits to pyproject.toml need no new venv. The
    # postgres extra too: under TICKETD_TEST_DB=postgres the pipe's `ticketd ingest` needs asyncpg.
    project = tomllib.loads(pyproject.read_text())["project"]
    dependencies = [*project["dependencies"], *project.get("optional-dependencies", {}).get("postgres", [])]
    digest = hashlib.sha256(json.dumps([SYSTEM_PYTHON, *dependencies]).encode()).hexdigest()[:16]
    venv = VENV_CACHE / f"ticketd-pipe-venv-{digest}"
    done = venv / ".complete"
    with open(VENV_CACHE / f"ticketd-pipe-venv-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        # A half-built venv (an interrupted run) is rebuilt from scratch.
        shutil.rmtree(venv, ignore_errors=True)
        for argv in ([SYSTEM_PYTHON, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *dependencies]):
            # umask 022: everything in the venv must be readable by the pipe user.
            built = subprocess.run(argv, capture_output=True, timeout=600, umask=0o022)
            if built.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{built.stderr.decode(errors='replace')}")
        done.touch()
    return venv


def _make_world_readable(top: Path) -> None:
    for path in [top, *top.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
