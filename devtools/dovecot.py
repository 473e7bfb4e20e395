"""A private Dovecot IMAP server on 127.0.0.1, Maildir storage under one directory, for tests."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import socket
import ssl
import stat
import subprocess
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools._maildir import deliver as maildir_deliver, make_maildir
from devtools._process import (
    ManagedServer,
    LOCALHOST, find_program, free_port, port_is_free, spawn, tail, terminate, track, untrack,
    wait_until,
)

DEFAULT_USERS = {"support@example.test": "secret"}
START_TIMEOUT = 10.0
_ROOT_MAIL_USER = "nobody"  # Dovecot refuses uid 0 for mail; as root we store mail as nobody.
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_LIST_LINE = re.compile(rb'\((?P<attrs>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
_STATUS_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


@dataclass(frozen=True)
class MailUser:
    """An IMAP login on a Dovecot instance."""

    address: str
    password: str


@dataclass(frozen=True)
class _Identity:
    """Who owns the mail (uid/gid) and which account Dovecot's own processes run as."""

    uid: int
    gid: int
    internal_user: str
    internal_group: str
    login_user: str
    rootless: bool


def _identity() -> _Identity:
    if os.geteuid() == 0:
        mail = pwd.getpwnam(_ROOT_MAIL_USER)
        return _Identity(mail.pw_uid, mail.pw_gid, "dovecot", "dovecot", "dovenull", rootless=False)
    # Rootless mode: every Dovecot process and the mail belong to us.
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(os.getegid()).gr_name
    return _Identity(me.pw_uid, os.getegid(), me.pw_name, group, me.pw_name, rootless=True)


class Dovecot(ManagedServer):
    """One Dovecot instance: config, logs, passwd-file and Maildirs all live under `root`.

    `start()` runs `dovecot -F` as a child process; `stop()` kills it and its children.
    Plain IMAP on `host:port` (cleartext login allowed); with `tls=True` also implicit TLS
    on `tls_port` and STARTTLS on `port`, with a self-signed certificate at `cert_path`.
    With `oauth2_introspection` (a URL) also XOAUTH2 and OAUTHBEARER logins, each bearer
    token checked at that RFC 7662 introspection endpoint (Dovecot's oauth2 passdb).
    """

    def __init__(
        self, root: Path, port: int = 0, users: dict[str, str] | None = None, *, tls: bool = False,
        oauth2_introspection: str | None = None,
    ) -> None:
        self.oauth2_introspection = oauth2_introspection
        self.root = Path(root).resolve()
        self.host = LOCALHOST
        self.port = port
        self.tls = tls
        self.tls_port = 0
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self._id = _identity()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    # -- paths -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def cert_path(self) -> Path:
        return self.root / "tls" / "cert.pem"

    @property
    def _key_path(self) -> Path:
        return self.root / "tls" / "key.pem"

    @property
    def _passwd_dir(self) -> Path:
        return self.root / "users"

    def home(self, user: str) -> Path:
        return self.root / "mail" / user

    def folder_path(self, user: str, folder: str = "INBOX") -> Path:
        """The Maildir of `folder` (LAYOUT=fs: 'A/B' is Maildir/A/B)."""
        return self.home(user) / "Maildir" / folder

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Write the config and start Dovecot; return once the port greets."""
        if self.running:
            return
        self._prepare_root()
        if not self.port:
            self.port = free_port(self.host)
        if self.tls and not self.tls_port:
            self.tls_port = free_port(self.host)
        self._wait_ports_free()
        self._write_files()
        self._proc = spawn([find_program("dovecot"), "-F", "-c", str(self.config_path)],
                           self.root / "dovecot.stderr")
        track(self)
        self._wait_ready()

    def stop(self) -> None:
        """Stop Dovecot and every process it started. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # Every process has had SIGTERM; a master still waiting on its log process
            # after that is only draining log lines, so it need not get long.
            terminate(proc, grace=0.3, whole_group=True)
        untrack(self)




    def log_tail(self, lines: int = 60) -> str:
        """The end of Dovecot's log, for failing tests."""
        stderr = tail(self.root / "dovecot.stderr", lines)
        return tail(self.log_path, lines) + (f"\n--- stderr ---\n{stderr}" if stderr else "")

    def _prepare_root(self) -> None:
        (self.root / "mail").mkdir(parents=True, exist_ok=True)
        if not self._id.rootless:
            # Dovecot's auth (user dovecot) and imap (the mail uid) processes must reach
            # the passwd-file, sockets and Maildirs.
            for path in (self.root, self.root / "mail"):
                path.chmod(0o755)
            _check_traversable(self.root)

    def _wait_ports_free(self) -> None:
        for port in (self.port, self.tls_port):
            if port and not wait_until(lambda: port_is_free(self.host, port), 5.0):
                raise RuntimeError(f"port {self.host}:{port} is still in use")

    def _wait_ready(self) -> None:
        try:
            if not wait_until(self._greets, START_TIMEOUT):
                raise RuntimeError(f"Dovecot did not greet on {self.host}:{self.port}:\n"
                                   f"{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _greets(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"Dovecot exited during start-up:\n{self.log_tail()}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                return sock.recv(256).startswith(b"* OK")
        except OSError:
            return False

    # -- configuration ---------------------------------------------------------------------

    def _write_files(self) -> None:
        if self.tls and not self.cert_path.exists():
            _make_self_signed_cert(self.cert_path, self._key_path)
        for address, password in self.users.items():
            self._make_home(address)
            self._write_passwd(address, self._passwd_line(address, password))
        if self.oauth2_introspection:
            (self.root / "oauth2.conf").write_text(
                f"introspection_url = {self.oauth2_introspection}\nintrospection_mode = post\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        ident = self._id
        # Without root there is no chroot(); Dovecot's rootless mode needs it switched off.
        login_chroot = anvil_chroot = "  chroot =\n" if ident.rootless else ""
        imaps_port = self.tls_port if self.tls else 0
        ssl_lines = (
            f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self._key_path}\n"
            if self.tls else "ssl = no\n"
        )
        return f"""\
# Generated by devtools.dovecot for a private test instance; see {self.log_path}.
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = ticketd-dovecot-{self.port}
log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
protocols = imap
listen = {self.host}
{ssl_lines}disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection else ""}
# Tests log in wrongly on purpose; do not make them wait (a failure is still answered by
# a 0.5 s timer in Dovecot's auth process).
auth_failure_delay = 0
default_internal_user = {ident.internal_user}
default_internal_group = {ident.internal_group}
default_login_user = {ident.login_user}
first_valid_uid = {ident.uid}
last_valid_uid = {ident.uid}
mail_location = maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX
# IDLE uses inotify; this is only the fallback poll when inotify is unavailable.
mailbox_idle_check_interval = 1 secs
{self._oauth2_passdb()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self._passwd_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self._passwd_dir}/%u
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {imaps_port}
  }}
}}
service anvil {{
{anvil_chroot}  # No per-IP auth penalty (2-15 s after a failed login): every test connects from
  # 127.0.0.1, so one wrong-password test would slow down the next ones.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  # Tests and benchmarks open many connections for one user from 127.0.0.1.
  mail_max_userip_connections = 1000
}}
"""

    def _oauth2_passdb(self) -> str:
        if not self.oauth2_introspection:
            return ""
        # Only for the bearer mechanisms: a password login still goes to the passwd-file.
        return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.root / "oauth2.conf"}
}}
"""

    # -- users -----------------------------------------------------------------------------

    def add_user(self, address: str | None = None, password: str = "secret") -> MailUser:
        """Create a login with an empty INBOX; a running Dovecot sees it at once.

        One passwd-file per user: Dovecot re-checks a known passwd-file at most once a
        second, but opens a file it has not seen yet on the first lookup.
        """
        address = address or f"user-{uuid.uuid4().hex[:12]}@example.test"
        line = self._passwd_line(address, password)
        with self._lock:
            self.users[address] = password
            self._make_home(address)
            self._write_passwd(address, line)
        return MailUser(address, password)

    def user(self, address: str) -> MailUser:
        return MailUser(address, self.users[address])

    def _passwd_line(self, address: str, password: str) -> str:
        if re.search(r"[:/\n]|^\.", address) or re.search(r"[:\n]", password):
            raise ValueError(f"{address!r}/{password!r} cannot be a passwd-file entry")
        ident = self._id
        return f"{address}:{{PLAIN}}{password}:{ident.uid}:{ident.gid}::{self.home(address)}::\n"

    def _write_passwd(self, address: str, line: str) -> None:
        self._passwd_dir.mkdir(mode=0o755, exist_ok=True)
        tmp = self._passwd_dir / f".{address}.tmp"
        tmp.write_text(line)
        tmp.chmod(0o644)  # read by Dovecot's auth process (user dovecot when we are root)
        tmp.replace(self._passwd_dir / address)

    def _make_home(self, user: str) -> None:
        self.create_folder(user, "INBOX")

    def _make_owned_dirs(self, path: Path) -> None:
        """mkdir -p below root/mail, each new directory owned by the mail user."""
        if path == self.root / "mail" or path.is_dir():
            return
        self._make_owned_dirs(path.parent)
        path.mkdir(mode=0o700)
        if self._owner:
            os.chown(path, *self._owner)

    @property
    def _owner(self) -> tuple[int, int] | None:
        """chown target for files we create as root; None when we are the mail user."""
        return None if self._id.rootless else (self._id.uid, self._id.gid)

    # -- mail ------------------------------------------------------------------------------

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Drop `raw` into the folder's Maildir new/ (as the MDA would); IMAP sees it next sync."""
        if user not in self.users:
            raise KeyError(f"unknown Dovecot user {user!r}; add_user() first")
        path = self.folder_path(user, folder)
        if not (path / "new").is_dir():
            self.create_folder(user, folder)
        maildir_deliver(path, raw, self._owner)

    def create_folder(self, user: str, folder: str) -> None:
        """Create `folder` (ASCII name, '/' for hierarchy) if missing; works while stopped too.

        A Maildir made on disk is listed by Dovecot at once: its mailbox list index is
        refreshed when the directory's mtime changes.
        """
        path = self.folder_path(user, folder)
        self._make_owned_dirs(path.parent)
        make_maildir(path, self._owner)

    def messages(self, user: str, folder: str = "INBOX") -> list[tuple[int, frozenset[str], bytes]]:
        """(uid, flags, raw) of every message, read over IMAP without changing anything.

        The session-only flag \\Recent is left out; raw comes back with CRLF line endings.
        """
        with self.imap(user) as imap:
            _check(imap.select(_quote(folder), readonly=True))
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            _check((typ, data))
        return _parse_fetch(data)

    def folders(self, user: str) -> list[str]:
        """Names of all folders of `user`, as IMAP LIST reports them."""
        with self.imap(user) as imap:
            typ, data = imap.list()
            _check((typ, data))
        return [_parse_list_line(line) for line in data if isinstance(line, bytes)]

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.imap(user) as imap:
            typ, data = imap.status(_quote(folder), "(UIDVALIDITY)")
            _check((typ, data))
        match = _STATUS_UIDVALIDITY.search(data[0] if isinstance(data[0], bytes) else b"")
        if match is None:
            raise RuntimeError(f"no UIDVALIDITY in {data!r}")
        return int(match.group(1))

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Give `folder` a new, larger UIDVALIDITY while the server runs; messages stay.

        Clients that have the folder selected are disconnected by Dovecot ("IMAP session
        state is inconsistent, please relogin"), as after a real server-side rebuild.
        """
        new = self.uidvalidity(user, folder) + 1
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)

    def imap(self, user: str) -> imaplib.IMAP4:
        """A fresh, logged-in stdlib IMAP connection (usable as a context manager)."""
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            imap.login(user, self.users[user])
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def _doveadm(self, *args: str) -> None:
        argv = [find_program("doveadm"), "-c", str(self.config_path), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _check(response: tuple[str, object]) -> None:
    typ, data = response
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ} {data!r}")


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_fetch(data: Sequence[object]) -> list[tuple[int, frozenset[str], bytes]]:
    """Turn imaplib's UID FETCH (UID FLAGS BODY.PEEK[]) answer into (uid, flags, raw)."""
    result: list[tuple[int, frozenset[str], bytes]] = []
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue
        head, raw = item
        trailer = data[index + 1] if index + 1 < len(data) else b""
        meta = head + (trailer if isinstance(trailer, bytes) else b"")
        uid, flags = _FETCH_UID.search(meta), _FETCH_FLAGS.search(meta)
        if uid is None or flags is None:
            raise RuntimeError(f"unexpected FETCH response {meta!r}")
        names = frozenset(flags.group(1).decode().split()) - {"\\Recent"}
        result.append((int(uid.group(1)), names, raw))
    return sorted(result)


def _parse_list_line(line: bytes) -> str:
    match = _LIST_LINE.match(line)
    if match is None:
        raise RuntimeError(f"unexpected LIST response {line!r}")
    name = match.group("name")
    if name.startswith(b'"'):
        name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
    return name.decode()


def _check_traversable(path: Path) -> None:
    """Fail early with a clear message if other users cannot reach `path` (as root)."""
    for parent in [path, *path.parents]:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise PermissionError(
                f"{parent} is not world-searchable; Dovecot's unprivileged processes cannot "
                f"reach {path}. Use a directory under /tmp (tempfile.mkdtemp()) instead.")


def _make_self_signed_cert(cert: Path, key: Path) -> None:
    """A throwaway certificate for 127.0.0.1/localhost (EC keys: a few milliseconds)."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [find_program("openssl"), "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )


def client_tls_context(dovecot: Dovecot) -> ssl.SSLContext:
    """An SSLContext that trusts exactly this instance's self-signed certificate."""
    return ssl.create_default_context(cafile=str(dovecot.cert_path))
