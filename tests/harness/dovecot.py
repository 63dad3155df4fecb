"""Dovecot IMAP harness: a throwaway server for the test session.

Fixtures:
- `dovecot` (session): a running Dovecot on a free 127.0.0.1 port, plain IMAP
  (`ssl = no`), Maildir storage in a temp dir, users from a passwd file.
- `imap_account` (function): a fresh user on that server (its own Maildir,
  so tests never see each other's mail), as an `ImapAccount` with host,
  port, username, password and a stdlib `imaplib` helper to append mail
  from a second, independent client.
- `dovecot_tls` (session): a second Dovecot with `ssl = required` and the
  session's test certificate (`tests.harness.certs`): implicit TLS on
  `tls_port`, plain IMAP with STARTTLS on `port`, where logging in before
  STARTTLS is refused (`LOGINDISABLED`, `[PRIVACYREQUIRED]`). It listens on
  127.0.0.2, not 127.0.0.1: Dovecot counts a connection whose remote address
  equals its local one as secured and would allow plaintext logins there,
  so on 127.0.0.1 `ssl = required` could not be observed. (Linux answers on
  all of 127.0.0.0/8.) Its accounts also have an OAuth 2 access token
  (`oauth2_token`), checked by Dovecot's `oauth2` passdb against a small
  token introspection endpoint served by the harness, so XOAUTH2 logins are
  verified by the real server.
- `imap_tls_account` (function): a fresh user on `dovecot_tls`; its helper
  client connects with implicit TLS, trusting only the test CA.

Dovecot comes from Debian's `dovecot-imapd` package (`.ci/system-deps`
installs it). When the binary is missing, tests that need it fail with a
message saying how to install it; under CI (`CI=true`) a skipped `imap` test
is turned into a failure. Locally, `-m "not imap"` deselects them.
Set `DOVECOT_BIN` to use a binary elsewhere.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.common import free_port

if TYPE_CHECKING:
    from tests.harness.certs import CertFiles, TestPki

# The test CA's fixture. (Its functions are imported where used: a module imported
# before pytest loads it as a plugin could not have its asserts rewritten.)
MAIL_USER = "vmail"
MAIL_UID = 5000
START_TIMEOUT = 20.0
USERS = 200  # one fresh mailbox per test
_AUTH_FAILED = re.compile(r"\(auth failed, (\d+) attempts")


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
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{ssl}
auth_mechanisms = {mechanisms}
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
first_valid_uid = {uid}
default_login_user = {login_user}
default_internal_user = {internal_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
{oauth2_passdb}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
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


_PLAIN_SSL = """\
ssl = no
disable_plaintext_auth = no"""

_REQUIRED_SSL = """\
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes"""

# Dovecot's oauth2 passdb asks the introspection endpoint about each token
# (`introspection_mode = auth`: GET with `Authorization: Bearer <token>`) and
# accepts the login when the answer is active and names the user logging in.
# It is tried only after passwd-file has failed (a token is no password).
_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}"""

_OAUTH2_CONF = """\
introspection_mode = auth
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


@dataclass
class ImapAccount:
    host: str
    port: int
    username: str
    password: str
    tls_port: int | None = None  # the implicit-TLS port, on a server that requires TLS
    ca_file: Path | None = None  # what the helper client trusts there
    oauth2_token: str | None = None  # accepted for XOAUTH2 by the server's oauth2 passdb

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A second, independent client (stdlib imaplib), logged in.

        On a server that requires TLS it connects with implicit TLS, trusting only
        `ca_file`.
        """
        if self.tls_port is not None:
            from tests.harness.certs import client_context

            assert self.ca_file is not None
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.host, self.tls_port, ssl_context=client_context(self.ca_file), timeout=10
            )
        else:
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
    host: str = "127.0.0.1"
    tls_port: int | None = None  # implicit TLS (with `ssl = required`)
    ca_file: Path | None = None  # the CA that signed the server's certificate
    tokens: dict[str, str] = field(default_factory=dict)  # user -> OAuth 2 access token
    introspection: _Introspection | None = None

    def add_user(self) -> ImapAccount:
        """The next unused account (all are written before start: Dovecot caches the file)."""
        if not self.free:
            pytest.fail(f"the Dovecot harness has only {USERS} accounts; raise USERS")
        name = self.free.pop(0)
        return ImapAccount(
            self.host,
            self.port,
            name,
            self.users[name],
            tls_port=self.tls_port,
            ca_file=self.ca_file,
            oauth2_token=self.tokens.get(name),
        )

    def logins(self, username: str, *, at_least: int = 1, seconds: float = 5.0) -> list[str]:
        """Dovecot's `Login:` log lines for `username` (they say `TLS` for TLS sessions).

        Waits up to `seconds` for `at_least` of them: the log is written asynchronously.
        """
        needle = f"Login: user=<{username}>"
        deadline = time.monotonic() + seconds
        while True:
            try:
                text = (self.root / "dovecot.log").read_text(errors="replace")
            except OSError:
                text = ""
            found = [line for line in text.splitlines() if needle in line]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def failed_logins(self, username: str) -> int:
        """Login attempts Dovecot refused for `username`, as its log counts them so far.

        A login process that gave up on a client logs one line for the connection,
        `... (auth failed, N attempts in S secs): user=<name>, ...`.
        """
        try:
            text = (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return 0
        needle = f"user=<{username}>"
        return sum(
            int(m.group(1))
            for line in text.splitlines()
            if needle in line and (m := _AUTH_FAILED.search(line)) is not None
        )

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
        if self.introspection is not None:
            self.introspection.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class _Introspection:
    """The OAuth 2 token introspection endpoint Dovecot's oauth2 passdb asks (RFC 7662 shape).

    `GET /introspect` with `Authorization: Bearer <token>`: `{"active": true,
    "username": <user>}` for a token in `tokens`, `{"active": false}` otherwise.
    Every asked token is recorded in `asked`.
    """

    def __init__(self, tokens: dict[str, str]) -> None:
        by_token = {token: user for user, token in tokens.items()}
        asked: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
                asked.append(token)
                user = by_token.get(token) if self.path == "/introspect" else None
                body = {"active": True, "username": user} if user else {"active": False}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: tests read `asked`

        self.asked = asked
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _start(tls: CertFiles | None = None, ca_file: Path | None = None) -> Dovecot:
    """Start Dovecot: plain IMAP on 127.0.0.1, or with `tls`, TLS required on 127.0.0.2."""
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
    host, tls_port, ssl_settings = "127.0.0.1", 0, _PLAIN_SSL
    tokens: dict[str, str] = {}
    introspection = None
    oauth2_passdb, mechanisms = "", "plain login"
    if tls is not None:
        host, tls_port = "127.0.0.2", free_port()
        ssl_settings = _REQUIRED_SSL.format(cert=tls.cert, key=tls.key)
        tokens = {u: secrets.token_urlsafe(24) for u in users}
        introspection = _Introspection(tokens)
        (root / "oauth2.conf.ext").write_text(_OAUTH2_CONF.format(url=introspection.url))
        oauth2_passdb = _OAUTH2_PASSDB.format(root=root)
        mechanisms = "plain login xoauth2 oauthbearer"
    conf = root / "dovecot.conf"
    conf.write_text(
        _CONFIG.format(
            root=root,
            host=host,
            port=port,
            tls_port=tls_port,
            ssl=ssl_settings,
            mechanisms=mechanisms,
            oauth2_passdb=oauth2_passdb,
            uid=uid,
            gid=gid,
            login_user=login_user,
            internal_user=internal_user,
        )
    )
    # Dovecot daemonizes; its master keeps our stdio, so send it to a file, not a pipe.
    with open(root / "start.log", "wb") as out:
        proc = subprocess.run([binary, "-c", str(conf)], stdout=out, stderr=out, check=False)
    server = Dovecot(
        root=root,
        port=port,
        owner=owner,
        users=users,
        free=sorted(users),
        host=host,
        tls_port=tls_port or None,
        ca_file=ca_file,
        tokens=tokens,
        introspection=introspection,
    )
    if proc.returncode != 0:
        text = (root / "start.log").read_text(errors="replace")
        server.stop()
        pytest.fail(f"dovecot failed to start ({proc.returncode}):\n{text}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
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


@pytest.fixture(scope="session")
def dovecot_tls(test_ca: TestPki) -> Iterator[Dovecot]:
    server = _start(tls=test_ca.server, ca_file=test_ca.ca_file)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_tls_account(dovecot_tls: Dovecot) -> ImapAccount:
    return dovecot_tls.add_user()


# --- CI: imap tests must run ----------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "imap: needs the real Dovecot IMAP server (harness)")
