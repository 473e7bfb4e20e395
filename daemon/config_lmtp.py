"""The ``[lmtp]`` section: where ``ticketd run`` listens for an MTA's LMTP deliveries."""

from __future__ import annotations

import grp
import importlib.util
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketd.daemon.config_section import Section

LISTEN_EXPECTED = ('an absolute Unix socket path like "/run/ticketd/lmtp.sock", or a loopback address '
                   'like "127.0.0.1:2424" or "[::1]:2424"')
MODE_EXPECTED = 'an octal permission string like "0660"'
# Owner and group may connect, others not: the MTA gets in through the group (socket_group).
DEFAULT_MODE = 0o660
SUN_PATH_MAX = 107  # bytes of a Unix socket path on Linux (sun_path is 108 with its NUL)


@dataclass(frozen=True)
class LmtpConfig:
    listen: str  # as the admin wrote it, for logs
    path: Path | None = None  # a Unix socket ...
    host: str | None = None  # ... or a loopback address and port
    port: int = 0
    socket_mode: int = DEFAULT_MODE
    socket_group: str | None = None  # a group name or number, for the MTA's user

    @property
    def is_unix(self) -> bool:
        return self.path is not None


def load_lmtp(section: Section) -> LmtpConfig | None:
    """Read ``[lmtp]``; without the section (or without ``listen``) the daemon does not listen."""
    listen = section.get("listen", str, None, expected=LISTEN_EXPECTED)
    if listen is None:
        section.done()
        return None
    if importlib.util.find_spec("aiosmtpd") is None:  # else `run` would die at start with a traceback
        section.fail("listen", "LMTP, which needs aiosmtpd; it is not installed (pip install aiosmtpd)")
    if listen.startswith("/"):
        if len(listen.encode()) > SUN_PATH_MAX or listen.endswith("/"):
            section.fail("listen", f"a socket file path of at most {SUN_PATH_MAX} bytes", listen)
        config = LmtpConfig(listen, path=Path(listen), socket_mode=_mode(section), socket_group=_group(section))
    else:
        host, port = _address(section, listen)
        for key in ("socket_mode", "socket_group"):
            if key in section.data:
                section.fail(key, "no such key with a TCP address (it is for a Unix socket path)")
        config = LmtpConfig(listen, host=host, port=port)
    section.done()
    return config


def _address(section: Section, listen: str) -> tuple[str, int]:
    """(host, port) of "127.0.0.1:2424" or "[::1]:2424"; only loopback: LMTP has no authentication."""
    host, colon, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address needs its brackets, or the port cannot be told apart
        section.fail("listen", LISTEN_EXPECTED, listen)
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        section.fail("listen", LISTEN_EXPECTED, listen)
        raise AssertionError("unreachable") from None
    if not colon or not 0 < number < 65536:
        section.fail("listen", LISTEN_EXPECTED, listen)
    if not address.is_loopback:
        section.fail("listen", LISTEN_EXPECTED + " (a loopback address only: anyone who can connect "
                     "can deliver mail)", listen)
    return str(address), number


def _mode(section: Section) -> int:
    text = section.get("socket_mode", str, f"{DEFAULT_MODE:04o}", expected=MODE_EXPECTED)
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        section.fail("socket_mode", MODE_EXPECTED, text)
    return int(text, 8)


def _group(section: Section) -> str | None:
    name = section.get("socket_group", str, None, expected="a group name or number")
    if name is None:
        return None
    try:
        grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except KeyError:
        section.fail("socket_group", "an existing group (e.g. the MTA's, such as \"postfix\")", name)
    return name


def group_id(name: str) -> int:
    """The gid of a group name or number that ``load_lmtp`` accepted."""
    return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
