"""A private Postfix on 127.0.0.1 that hands mail for test domains to a pipe(8) command or LMTP, for tests."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import signal
import smtplib
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path

from devtools._process import (
    ManagedServer,
    LOCALHOST, _signal_group, find_program, free_port, port_is_free, tail, track, untrack,
    wait_until,
)
from devtools.pipeuser import PIPE_USER, ensure_pipe_user

__all__ = ["PIPE_USER", "Delivery", "Postfix"]

# The master.cf service name of the pipe, and so the `relay=` of its deliveries in the log.
TRANSPORT = "ticketd"
LMTP_TRANSPORT = "ticketd-lmtp"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# pipe(8) splits argv= on whitespace; `{ ... }` keeps one argument whole (Postfix >= 3.0).
_NEEDS_BRACES = re.compile(r"\s")
_STATUS = re.compile(
    r"postfix/[\w./-]+\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): to=<(?P<recipient>[^>]*)>,"
    r".*? relay=(?P<relay>[^,]+),.*? status=(?P<status>sent|bounced|deferred|expired)"
    r" \((?P<detail>.*)\)$"
)
_QUEUED_AS = re.compile(rb"queued as ([0-9A-Za-z]+)")
# The queue's directories as /etc/postfix/postfix-files has them: (mode, group is postdrop).
_QUEUE_DIRS = {name: (0o700, False) for name in (
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
    "saved", "trace")} | {"maildrop": (0o730, True), "public": (0o710, True)}
# The services a Postfix needs to take mail over SMTP and deliver it, none chrooted: a
# chroot would need copies of /etc files, and the instance only ever talks to 127.0.0.1.
_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
flush     unix  n - n 1000? 0 flush
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
smtp      unix  - - n -     - smtp
# The README's LMTP recipe: lmtp(8) unchrooted under a name of its own, so it can reach
# /run/ticketd (Debian chroots the stock `lmtp` into the queue directory).
{lmtp_transport} unix - - n - - lmtp
relay     unix  - - n -     - smtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
# The recipe an admin would use for `ticketd ingest` (as for rt-mailgate): an unprivileged
# user, R = Return-Path header, q = quote addresses in macros.
{transport} unix - n n - - pipe
  flags={flags} user={user} argv={argv}
"""


@dataclass(frozen=True)
class Delivery:
    """One `status=` line of the mail log: what became of one recipient of one queued message."""

    queue_id: str
    recipient: str
    relay: str
    status: str  # sent, bounced, deferred or expired
    detail: str


class Postfix(ManagedServer):
    """One Postfix instance whose config, queue, data and mail log all live under `root`.

    Mail for `domains` goes through the pipe transport `ticketd` (argv `pipe_command`, run
    as `pipe_user`, one recipient per delivery, up to `concurrency` at once). Anything else
    goes to `relayhost` (e.g. "[127.0.0.1]:2525") when given, and is discarded otherwise, so
    bounce notices to made-up senders never sit in the queue. `retry_after` (seconds) makes
    deferred mail come again that soon instead of after Postfix's 300 s or more. `routes`
    maps addresses (or domains) to a next hop of the transport, as the README's recipe does.
    With `lmtp` (a Unix socket path) the domains go to `ticketd-lmtp:unix:PATH` instead, as
    the README's LMTP recipe has it; the pipe stays configured but unused.
    """

    def __init__(
        self, root: Path, pipe_command: Sequence[str], *, pipe_user: str = PIPE_USER,
        domains: Sequence[str] = ("example.test",), relayhost: str | None = None, port: int = 0,
        concurrency: int = 10, pipe_flags: str = "Rq", retry_after: int | None = None,
        routes: Mapping[str, str] | None = None, lmtp: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = LOCALHOST
        self.port = port
        self.pipe_command = list(pipe_command)
        self.pipe_user = pipe_user
        self.domains = list(domains)
        # transport_maps entries: address or domain -> next hop (`ticketd:NEXTHOP`, which the
        # pipe's argv can pass on as ${nexthop}); by default each domain with no next hop.
        self.routes = dict(routes) if routes is not None else {domain: "" for domain in self.domains}
        self.lmtp = lmtp
        self.relayhost = relayhost
        self.concurrency = concurrency
        self.pipe_flags = pipe_flags
        self.retry_after = retry_after
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.log_path = self.root / "log" / "maillog"
        self._started = False

    @property
    def running(self) -> bool:
        return self._master_pid() is not None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Write main.cf and master.cf, `postfix start`, and return once smtpd greets."""
        if self.running:
            return
        if os.geteuid() != 0:
            raise PermissionError("a private Postfix needs root (its daemons drop to 'postfix')")
        ensure_pipe_user(self.pipe_user)
        self.port = self.port or free_port(self.host)
        if not wait_until(lambda: port_is_free(self.host, self.port), 5.0):
            raise RuntimeError(f"port {self.host}:{self.port} is still in use")
        self._write_files()
        track(self)
        self._started = True
        try:
            started = subprocess.run([find_program("postfix"), "-c", str(self.config_dir), "start"],
                                     capture_output=True, timeout=START_TIMEOUT)
            if started.returncode != 0:
                raise RuntimeError(f"postfix start failed ({started.returncode}):\n"
                                   f"{started.stderr.decode(errors='replace')}\n{self.log_tail()}")
            if not wait_until(self._greets, START_TIMEOUT, interval=0.05):
                raise RuntimeError(f"postfix did not greet on {self.host}:{self.port}:\n"
                                   f"{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the master, then make sure no process of this instance is left. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        untrack(self)
        pid = self._master_pid()
        if pid is None:
            return
        # What `postfix stop` does, minus its 1 s polling: SIGTERM the master, which stops
        # its children and exits.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), STOP_TIMEOUT, interval=0.05)
        # The master is a session leader (it daemonised): its group holds every child it
        # started, pipe commands included, and none may linger holding the port or the queue.
        _signal_group(pid, signal.SIGKILL)

    # -- helpers for tests -----------------------------------------------------------------

    def send(self, messages: Sequence[bytes], parallel: bool = True, sender: str | None = None,
             recipients: Sequence[str] | None = None) -> list[str]:
        """Submit each message over its own SMTP session; return the queue ids in order.

        The envelope comes from the From and To/Cc headers unless `sender`/`recipients` say.
        """
        with ThreadPoolExecutor(max_workers=min(len(messages), 16) if parallel else 1) as pool:
            return list(pool.map(lambda raw: self._submit(raw, sender, recipients), messages))

    def queue(self) -> list[dict[str, object]]:
        """The queued messages, one dict each (`postqueue -j`)."""
        done = subprocess.run([find_program("postqueue"), "-c", str(self.config_dir), "-j"],
                              capture_output=True, timeout=30, check=True)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once the queue is empty; TimeoutError (with the queue and log) after `timeout`."""
        if not wait_until(lambda: not self.queue(), timeout, interval=0.1):
            raise TimeoutError(f"postfix queue not empty after {timeout}s: {self.queue()}\n"
                               f"{self.log_tail()}")

    def flush(self) -> None:
        """Retry deferred mail now (`postqueue -f`) instead of after the back-off."""
        subprocess.run([find_program("postqueue"), "-c", str(self.config_dir), "-f"],
                       capture_output=True, timeout=30, check=True)

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def delivery_statuses(self, relay: str | None = TRANSPORT) -> list[Delivery]:
        """Every `status=` line of the log, oldest first; only the pipe's unless `relay` is None."""
        found = (_STATUS.search(line) for line in self.log_lines())
        deliveries = [Delivery(**match.groupdict()) for match in found if match]
        return [d for d in deliveries if relay is None or d.relay == relay]

    def wait_statuses(self, queue_ids: Sequence[str], timeout: float = 30.0) -> dict[str, Delivery]:
        """The latest pipe delivery status of each queue id, once every one of them has one."""
        wanted = set(queue_ids)

        def latest() -> dict[str, Delivery]:
            return {d.queue_id: d for d in self.delivery_statuses() if d.queue_id in wanted}

        if not wait_until(lambda: len(latest()) == len(wanted), timeout, interval=0.1):
            raise TimeoutError(f"no delivery status for {sorted(wanted - set(latest()))} after "
                               f"{timeout}s:\n{self.log_tail()}")
        return latest()

    def log_tail(self, lines: int = 60) -> str:
        """The end of the mail log, for failing tests."""
        return tail(self.log_path, lines)

    # -- internals -------------------------------------------------------------------------

    def _submit(self, raw: bytes, sender: str | None, recipients: Sequence[str] | None) -> str:
        headers = BytesHeaderParser().parsebytes(raw)
        mail_from = sender if sender is not None else parseaddr(headers.get("From", ""))[1]
        rcpt_to = list(recipients) if recipients is not None else [
            address for _, address in getaddresses(headers.get_all("To", []) + headers.get_all("Cc", []))
            if address
        ]
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            smtp.ehlo("client.ticketd.test")
            code, reply = smtp.mail(mail_from)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, mail_from)
            for address in rcpt_to:
                code, reply = smtp.rcpt(address)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
            code, reply = smtp.data(raw)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        queued = _QUEUED_AS.search(reply)
        if queued is None:
            raise RuntimeError(f"no queue id in the DATA reply {reply!r}")
        return queued.group(1).decode()

    def _greets(self) -> bool:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=2.0) as smtp:
                return smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def _master_pid(self) -> int | None:
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _write_files(self) -> None:
        for path in (self.config_dir, self.queue_dir / "pid", self.log_path.parent):
            path.mkdir(parents=True, exist_ok=True)
        self._make_queue()
        (self.config_dir / "transport").write_text(self._transport_map())
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(
            host=self.host, port=self.port, transport=TRANSPORT, lmtp_transport=LMTP_TRANSPORT,
            flags=self.pipe_flags, user=self.pipe_user,
            argv=" ".join(_pipe_arg(arg) for arg in self.pipe_command)))
        # Postfix waits (in steps of 0.3 s) until its config files are older than the current
        # second, so that a change within the same second cannot go unnoticed; ours are final.
        past = time.time() - 2
        for path in self.config_dir.iterdir():
            os.utime(path, (past, past))

    def _transport_map(self) -> str:
        if self.lmtp is not None:
            return "".join(f"{domain} {LMTP_TRANSPORT}:unix:{self.lmtp}\n" for domain in self.domains)
        return "".join(f"{key} {TRANSPORT}:{nexthop}\n" for key, nexthop in self.routes.items())

    def _make_queue(self) -> None:
        """Lay out the queue (and data) directories the way `postfix check` would.

        `postfix start` then skips its integrity checks (the quick-start marker), which
        take seconds; a fresh instance has nothing in it to check.
        """
        postfix, postdrop = pwd.getpwnam("postfix"), grp.getgrnam("postdrop")
        # Postfix refuses a data directory (TLS caches, locks) not owned by its mail_owner.
        for name, (mode, setgid) in {**_QUEUE_DIRS, "../data": (0o700, False)}.items():
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            os.chown(path, postfix.pw_uid, postdrop.gr_gid if setgid else postfix.pw_gid)
            path.chmod(mode)
        (self.queue_dir / "quick-start").touch()

    def _main_cf(self) -> str:
        outbound = (f"relayhost = {self.relayhost}\ndefault_transport = smtp"
                    if self.relayhost else "relayhost =\ndefault_transport = discard")
        if self.retry_after is not None:
            outbound += (f"\nqueue_run_delay = {self.retry_after}s\nminimal_backoff_time = "
                         f"{self.retry_after}s\nmaximal_backoff_time = {2 * self.retry_after}s")
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.root / "data"}
mail_owner = postfix
setgid_group = postdrop
# The mail log is a file of this instance; Postfix only writes under an allowed prefix.
maillog_file_prefixes = {self.root}
maillog_file = {self.log_path}
myhostname = mta.ticketd.test
mydomain = ticketd.test
myorigin = $myhostname
inet_interfaces = {self.host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP
biff = no
message_size_limit = 52428800
# Nothing is delivered locally: the test domains are relayed to the pipe, the rest goes out.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = {", ".join(self.domains)}
relay_recipient_maps =
transport_maps = texthash:{self.config_dir / "transport"}
{outbound}
# Offline: 127.0.0.1 only, no DNS.
smtp_dns_support_level = disabled
smtp_host_lookup = native
# One process per message, like rt-mailgate: the recipient limit of 1 also makes each
# recipient its own destination, and several deliveries run at once from the first.
{TRANSPORT}_destination_recipient_limit = 1
{TRANSPORT}_destination_concurrency_limit = {self.concurrency}
{TRANSPORT}_initial_destination_concurrency = {self.concurrency}
"""


def _pipe_arg(arg: str) -> str:
    return f"{{ {arg} }}" if _NEEDS_BRACES.search(arg) else arg


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
