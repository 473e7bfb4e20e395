"""The ``[metrics]`` section: where `ticketd run` serves Prometheus metrics, if anywhere."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketd.daemon.config_section import Section

LISTEN_EXPECTED = 'an address and port like "127.0.0.1:9101" or "[::1]:9101"'
REMOTE = (" on a loopback address (127.0.0.1, ::1): the endpoint has no authentication and names the "
          "mailboxes; set metrics.allow_remote = true to serve it to other hosts")


class EndpointError(Exception):
    """The configured endpoint cannot be served (the address is taken, say); the text says why."""


@dataclass(frozen=True)
class MetricsConfig:
    listen: str  # as the admin wrote it, for logs
    host: str  # an IP address, without brackets
    port: int


def load_metrics(section: Section) -> MetricsConfig | None:
    """Read ``[metrics]``; without ``listen`` no endpoint is served."""
    listen = section.get("listen", str, None, expected=LISTEN_EXPECTED)
    allow_remote = section.get("allow_remote", bool, False)
    section.done()
    if listen is None:
        return None
    host, port = _address(section, listen)
    if not allow_remote and not ipaddress.ip_address(host).is_loopback:
        section.fail("listen", LISTEN_EXPECTED + REMOTE, listen)
    return MetricsConfig(listen, host, port)


def _address(section: Section, listen: str) -> tuple[str, int]:
    """(host, port) of "127.0.0.1:9101" or "[::1]:9101"; an IPv6 address needs its brackets."""
    host, colon, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # without brackets the port cannot be told from the address
        section.fail("listen", LISTEN_EXPECTED, listen)
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        section.fail("listen", LISTEN_EXPECTED + " (an IP address, not a host name)", listen)
        raise AssertionError("unreachable") from None
    if not colon or not 0 < number < 65536 or not port.isdigit():
        section.fail("listen", LISTEN_EXPECTED + " (a port of 1-65535)", listen)
    return str(address), number
