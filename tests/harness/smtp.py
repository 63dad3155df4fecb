"""SMTP harness: a real, capturing SMTP server (aiosmtpd) on a loopback port.

Fixture `smtp_server` (function): a `CapturingSmtp` whose `messages` are the
accepted messages (sender, recipients, raw bytes, and the TLS version of the
session they came over, or None), and whose answers can be scripted:
`data_replies` (a queue of replies to DATA, e.g. three
`451 4.3.0 try again later`, then the default `250`), `rcpt_replies`
(address → reply for RCPT TO) and `refuse_all` (every RCPT answered 550).

TLS variants, presenting the session's test certificate (`tests.harness.certs`;
`ca_file` on the server object is the CA a client must trust):

- `smtp_starttls_server`: offers STARTTLS and requires it (aiosmtpd's
  `require_starttls`: MAIL before STARTTLS is answered 530);
- `smtp_tls_server`: implicit TLS from the first byte (port-465 style).

`start_smtp(...)` starts one with any certificate, e.g. one for another name,
or, given `passwords` (login → password), one that offers AUTH (in clear text
too) and records each attempt's login and password in `logins`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.harness.common import free_port

if TYPE_CHECKING:
    from tests.harness.certs import CertFiles, TestPki

# The test CA's fixture. (Its functions are imported where used: a module imported
# before pytest loads it as a plugin could not have its asserts rewritten.)


@dataclass
class Captured:
    sender: str
    recipients: list[str]
    raw: bytes
    tls: str | None = None  # e.g. "TLSv1.3": the session was encrypted; None: clear text

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class CapturingSmtp:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Captured] = field(default_factory=list)
    data_replies: deque[str] = field(default_factory=deque)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_attempts: int = 0
    ca_file: Path | None = None  # with TLS: the CA that signed the server's certificate
    passwords: dict[str, str] = field(default_factory=dict)  # with AUTH: login -> password
    logins: list[tuple[str, str]] = field(default_factory=list)  # each AUTH attempt
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's `authenticator`: records the attempt, accepts a known password."""
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        with self.lock:
            self.logins.append((login, password))
            return AuthResult(success=self.passwords.get(login) == password)

    # aiosmtpd handler hooks (run in the server's own thread and loop)
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None and not reply.startswith("250"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_attempts += 1
            if self.data_replies:
                return self.data_replies.popleft()
            ssl_object = server.transport.get_extra_info("ssl_object")
            self.messages.append(
                Captured(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.content),
                    tls=ssl_object.version() if ssl_object is not None else None,
                )
            )
        return "250 2.0.0 Message accepted for delivery"


class ClosingController(Controller):
    """aiosmtpd's Controller, closing the sessions still open when it stops.

    Its own `stop()` stops the server's loop with live sessions in it, and their
    sockets are left to the garbage collector, which warns (unclosed socket and
    transport) in whichever test runs then. On a busy machine a client's QUIT is
    often not yet processed by then, so this showed up only under load.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[Any] = []

    def factory(self) -> Any:
        session = super().factory()
        self.sessions.append(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None and self.loop.is_running():
            closing = asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop)
            closing.result(timeout=10)
        super().stop(no_assert)

    async def _close_sessions(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.abort()
        # connection_lost (which drops `transport`) runs in the next turns of the loop.
        for _ in range(1000):
            if all(session.transport is None for session in self.sessions):
                return
            await asyncio.sleep(0.001)


@contextlib.contextmanager
def start_smtp(
    tls: Literal["none", "starttls", "tls"] = "none",
    cert: CertFiles | None = None,
    ca_file: Path | None = None,
    passwords: dict[str, str] | None = None,
) -> Iterator[CapturingSmtp]:
    """A running capturing server; with `tls`, presenting `cert` (signed by `ca_file`);
    with `passwords`, offering AUTH."""
    server = CapturingSmtp(port=free_port(), ca_file=ca_file, passwords=dict(passwords or {}))
    kwargs: dict[str, Any] = {}
    if passwords is not None:
        kwargs = {"authenticator": server.authenticate, "auth_require_tls": False}
    if tls != "none":
        from tests.harness.certs import server_context

        assert cert is not None
        context = server_context(cert)
        if tls == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        else:
            kwargs |= {"ssl_context": context}
    controller = ClosingController(server, hostname=server.host, port=server.port, **kwargs)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[CapturingSmtp]:
    with start_smtp() as server:
        yield server


@pytest.fixture
def smtp_starttls_server(test_ca: TestPki) -> Iterator[CapturingSmtp]:
    with start_smtp("starttls", test_ca.server, test_ca.ca_file) as server:
        yield server


@pytest.fixture
def smtp_tls_server(test_ca: TestPki) -> Iterator[CapturingSmtp]:
    with start_smtp("tls", test_ca.server, test_ca.ca_file) as server:
        yield server
