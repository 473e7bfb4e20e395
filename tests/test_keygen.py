"""``ticketd keygen FILE``: a key the config accepts, mode 0600, never over an existing file unless --force."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ticketd.daemon.cli import main
from ticketd.daemon.config import load_config
from ticketd.daemon.keygen import EX_CANTCREAT
from tests.test_config import MINIMUM, write
from tests.test_config_agents import ISSUE


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_is_random_owner_only_and_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    old_umask = os.umask(0)  # even a careless umask gets 0600
    try:
        assert main(["keygen", str(first)]) == 0
    finally:
        os.umask(old_umask)
    assert main(["keygen", str(second)]) == 0
    out, err = capsys.readouterr()
    key = first.read_text()
    assert mode(first) == mode(second) == 0o600
    assert len(key) == 65 and key.endswith("\n") and int(key, 16) >= 0
    assert key != second.read_text()
    assert str(first) in out and key.strip() not in out + err and second.read_text().strip() not in out + err


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signing.key"
    path.write_text("the old key\n")
    path.chmod(0o644)
    assert main(["keygen", str(path)]) == EX_CANTCREAT
    assert path.read_text() == "the old key\n"
    assert "exists; --force replaces it" in capsys.readouterr().err
    assert main(["keygen", "--force", str(path)]) == 0
    assert path.read_text() != "the old key\n" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["signing.key"]  # no temporary file left


def test_a_symlink_at_the_path_is_not_followed(tmp_path: Path) -> None:
    target, link = tmp_path / "target", tmp_path / "signing.key"
    link.symlink_to(target)  # dangling: O_CREAT alone would create the target
    assert main(["keygen", str(link)]) == EX_CANTCREAT
    assert not target.exists()


def test_a_missing_directory_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", str(tmp_path / "nope" / "signing.key")]) == EX_CANTCREAT
    assert capsys.readouterr().err.strip().endswith("signing.key: No such file or directory")


def test_the_config_accepts_the_key_it_writes(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    assert main(["keygen", str(path)]) == 0
    config = load_config(write(tmp_path, MINIMUM + ISSUE.replace("/etc/ticketd/signing.key", str(path))))
    assert config.team.signing.key == path.read_text().strip().encode()
