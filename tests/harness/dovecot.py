"""Dovecot IMAP harness: a throwaway server for the test session.

Fixtures:
- `dovecot` (session): a running Dovecot on a free 127.0.0.1 port, plain IMAP
  (`ssl = no`), Maildir storage in a temp dir, users from a passwd file.
- `imap_account` (function): a fresh user on that server (its own Maildir,
  so tests never see each other's mail), as an `ImapAccount` with host,
  port, username, password and a stdlib `imaplib` helper to append mail
  from a second, independent client.

Dovecot comes from Debian's `dovecot-imapd` package (`.ci/system-deps`
installs it). When the binary is missing, tests that need it fail with a
message saying how to install it; under CI (`CI=true`) a skipped `imap` test
is turned into a failure. Locally, `-m "not imap"` deselects them.
Set `DOVECOT_BIN` to use a binary elsewhere.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.common import free_port

MAIL_USER = "vmail"
MAIL_UID = 5000
START_TIMEOUT = 20.0
USERS = 200  # one fresh mailbox per test


def _binary() -> str | None:
    return (
        os.environ.get("DOVECOT_BIN")
        or shutil.which("dovecot")
        or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").is_file() else None)
    )


def _mail_user() -> tuple[int, int] | None:
    """uid/gid owning the mail (Dovecot refuses uid 0 for mail); None: ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-r", "-M", "-u", str(MAIL_UID), "-s", "/usr/sbin/nologin", MAIL_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
first_valid_uid = {uid}
default_login_user = {login_user}
default_internal_user = {internal_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass
class ImapAccount:
    host: str
    port: int
    username: str
    password: str

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A second, independent client (stdlib imaplib), logged in."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            conn.login(self.username, self.password)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()
            with contextlib.suppress(Exception):
                conn.shutdown()

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.client() as conn:
            for raw in messages:
                typ, data = conn.append(folder, None, None, raw)
                assert typ == "OK", data

    def recreate(self, folder: str) -> None:
        """Delete `folder` and create it again: it comes back empty with a new UIDVALIDITY.

        (INBOX cannot be deleted: tests of UIDVALIDITY changes use another folder.)
        """
        assert folder.upper() != "INBOX", "INBOX cannot be deleted; use another folder"
        with self.client() as conn:
            conn.delete(folder)
            typ, data = conn.create(folder)
            assert typ == "OK", data

    def create(self, folder: str) -> None:
        with self.client() as conn:
            typ, data = conn.create(folder)
            assert typ == "OK", data


@dataclass
class Dovecot:
    root: Path
    port: int
    owner: tuple[int, int] | None
    users: dict[str, str] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)

    def add_user(self) -> ImapAccount:
        """The next unused account (all are written before start: Dovecot caches the file)."""
        if not self.free:
            pytest.fail(f"the Dovecot harness has only {USERS} accounts; raise USERS")
        name = self.free.pop(0)
        return ImapAccount("127.0.0.1", self.port, name, self.users[name])

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        pidfile = self.root / "run" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


def _start() -> Dovecot:
    binary = _binary()
    if binary is None:
        pytest.fail(
            "Dovecot not found: install it (Debian: apt-get install -y dovecot-imapd, "
            "or bash .ci/system-deps) or point DOVECOT_BIN at the binary. "
            'To leave these tests out locally, run pytest -m "not imap".'
        )
    owner = _mail_user()
    root = Path(tempfile.mkdtemp(prefix="omnirouter-dovecot-"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    users = {f"u{i:03d}-{secrets.token_hex(3)}": secrets.token_hex(8) for i in range(USERS)}
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    uid, gid = owner if owner is not None else (os.geteuid(), os.getegid())
    login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
    if owner is not None:
        os.chown(root / "mail", uid, gid)
        login_user = internal_user = "dovenull" if _has_user("dovenull") else MAIL_USER
        internal_user = "dovecot" if _has_user("dovecot") else MAIL_USER
    root.chmod(0o755)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        _CONFIG.format(
            root=root,
            port=port,
            uid=uid,
            gid=gid,
            login_user=login_user,
            internal_user=internal_user,
        )
    )
    # Dovecot daemonizes; its master keeps our stdio, so send it to a file, not a pipe.
    with open(root / "start.log", "wb") as out:
        proc = subprocess.run([binary, "-c", str(conf)], stdout=out, stderr=out, check=False)
    server = Dovecot(root=root, port=port, owner=owner, users=users, free=sorted(users))
    if proc.returncode != 0:
        text = (root / "start.log").read_text(errors="replace")
        server.stop()
        pytest.fail(f"dovecot failed to start ({proc.returncode}):\n{text}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            pytest.fail(f"dovecot did not answer on port {port} in {START_TIMEOUT}s:\n{tail}")
        time.sleep(0.05)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = _start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_account(dovecot: Dovecot) -> ImapAccount:
    return dovecot.add_user()


# --- CI: imap tests must run ----------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "imap: needs the real Dovecot IMAP server (harness)")
