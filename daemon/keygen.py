"""``ticketd keygen FILE``: a new signing key for the reply addresses, readable by its owner only."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

KEY_BYTES = 32  # 256 bits; written as 64 hex characters, which the config reads as the key
EX_CANTCREAT = 73  # sysexits.h: cannot create the output file


def write_key(path: Path, force: bool = False) -> None:
    """Write a random key to ``path`` (mode 0600); an existing file is kept unless ``force``.

    The file appears whole or not at all: a half-written key would sign addresses that no
    later key verifies. FileExistsError when it exists and not ``force``.
    """
    line = (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii")
    if not force:
        _create(path, line)
        return
    # mkstemp creates with 0600 and O_EXCL; the rename replaces a symlink itself, not its target.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _create(path: Path, line: bytes) -> None:
    # O_EXCL: never an existing file, never through a symlink planted at the path.
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(handle, 0o600)  # whatever the umask
        os.write(handle, line)
        os.fsync(handle)
    except BaseException:
        os.close(handle)
        path.unlink(missing_ok=True)
        raise
    os.close(handle)


def main(file: str, force: bool) -> int:
    """The command: one line on stdout naming the file (never the key), or one on stderr and 73."""
    path = Path(file)
    try:
        write_key(path, force)
    except FileExistsError:
        print(f"ticketd keygen: {file} exists; --force replaces it (the reply addresses signed with the "
              "old key then stop proving anything)", file=sys.stderr)
        return EX_CANTCREAT
    except OSError as exc:
        print(f"ticketd keygen: cannot write {file}: {exc.strerror}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"ticketd keygen: wrote a new {KEY_BYTES * 8}-bit key to {file} (mode 0600); "
          f'name it in [signing] secret_file = "{path.resolve()}"')
    return 0
