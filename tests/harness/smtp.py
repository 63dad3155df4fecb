"""SMTP harness: a real, capturing SMTP server (aiosmtpd) on a loopback port.

Fixture `smtp_server` (function): a `CapturingSmtp` whose `messages` are the
accepted messages (sender, recipients, raw bytes), and whose answers can be
scripted: `data_replies` (a queue of replies to DATA, e.g. three
`451 4.3.0 try again later`, then the default `250`), `rcpt_replies`
(address → reply for RCPT TO) and `refuse_all` (every RCPT answered 550).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.harness.common import free_port


@dataclass
class Captured:
    sender: str
    recipients: list[str]
    raw: bytes

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
    lock: threading.Lock = field(default_factory=threading.Lock)

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
            self.messages.append(
                Captured(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[CapturingSmtp]:
    server = CapturingSmtp(port=free_port())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
