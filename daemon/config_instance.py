"""The ``[instance]`` section: this daemon's name among several, and how long it holds a mailbox."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketd.daemon.config_section import Section

# A lease shorter than this would have to be renewed more often than a loaded database answers;
# longer than an hour, a dead instance's mailboxes would wait for most of a morning.
MIN_LEASE, MAX_LEASE = 1.0, 3600.0


def _hostname() -> str:
    return socket.gethostname() or "localhost"


@dataclass(frozen=True)
class InstanceConfig:
    # Shown by `ticketd status` beside the instance id (host:pid:random); the host name by default.
    name: str = field(default_factory=_hostname)
    # Seconds a mailbox stays this instance's after the last renewal; renewed every third of it.
    lease_seconds: float = 30.0

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3


def load_instance(section: Section) -> InstanceConfig:
    name = section.get("name", str, None, expected="a short name for this instance, like \"mail1\"")
    if name is not None and (not name.strip() or len(name) > 100 or not name.isprintable()):
        section.fail("name", "a short name for this instance (1-100 printable characters)", name)
    lease = section.get("lease_seconds", float, 30.0, expected=f"a number of seconds ({MIN_LEASE:g}-{MAX_LEASE:g})")
    if not MIN_LEASE <= lease <= MAX_LEASE:
        section.fail("lease_seconds", f"a number of seconds ({MIN_LEASE:g}-{MAX_LEASE:g})", lease)
    section.done()
    return InstanceConfig(lease_seconds=lease) if name is None else InstanceConfig(name.strip(), lease)
