"""The whole round trip with an agent who works from their mailbox, through the real daemon.

Customer mail (Dovecot) → router assigns it to Ana, whose sink is this email
channel → her notification (aiosmtpd) with the signed token in Reply-To →
forged replies (her address with a bad token; a stranger with her token) and
her real reply (`#resolve` plus text), appended to the mailbox addressed to
that Reply-To → the customer gets one threaded reply, the forger nothing,
Ana a rejection notice, and the conversation is resolved.

The channel runner consumes `omni.agent.support-email` itself (agents whose
sink is this channel), so nothing here drives the bus by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.email.agentmail import REPLY_MARKER, decode_token, encode_token
from router.config import parse_config
from router.store import open_store
from tests.connectors.email.helpers import daemon_config
from tests.harness.common import eventually as wait_until
from tests.harness.daemon import running
from tests.harness.dovecot import ImapAccount
from tests.harness.smtp import Captured, CapturingSmtp

pytestmark = pytest.mark.imap

CUSTOMER = "eva@example.net"
AGENT = "ana@corp.example"


def config_text(tmp: Path, account: ImapAccount, smtp: CapturingSmtp) -> str:
    return daemon_config(
        tmp,
        account,
        smtp,
        smtp_extra="        from_name: Shop Support\n",
        rest=f"""skills:
  - name: billing
agents:
  - id: ana
    name: Ana Pérez
    skills: {{billing: 4}}
    capacity: {{email: 5}}
    sink: {{type: email, channel: support-email, address: {AGENT}}}
routing:
  rules:
    - name: billing
      match: {{keywords: [invoice, refund]}}
      then: {{skills: {{billing: 2}}}}
""",
    )


def customer_mail() -> bytes:
    return (
        f"From: Eva Núñez <{CUSTOMER}>\r\nTo: support@shop.example\r\n"
        "Subject: Invoice charged twice\r\nMessage-ID: <c1@example.net>\r\n"
        "Date: Mon, 3 Mar 2025 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nHello, my invoice 4411 was charged twice. Please refund one.\r\n"
    ).encode()


def agent_reply(n: int, *, sender: str, to: str, notification: EmailMessage, body: str) -> bytes:
    quoted = "\r\n".join(
        f"> {line}" for line in notification.get_body(("plain",)).get_content().splitlines()
    )
    return (
        f"From: Ana <{sender}>\r\nTo: {to}\r\nSubject: Re: {notification['Subject']}\r\n"
        f"Message-ID: <agent{n}@corp.example>\r\nIn-Reply-To: {notification['Message-ID']}\r\n"
        f"References: {notification['References']} {notification['Message-ID']}\r\n"
        "Date: Mon, 3 Mar 2025 10:05:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"\r\n{body}\r\n\r\n"
        f"On Mon, 3 Mar 2025 at 10:01, Shop Support <support@shop.example> wrote:\r\n{quoted}\r\n"
    ).encode()


ROUND_TRIP_SECONDS = 20.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    await wait_until(check, ROUND_TRIP_SECONDS)


def to(smtp: CapturingSmtp, address: str) -> list[Captured]:
    return [m for m in smtp.messages if address in m.recipients]


async def test_customer_mail_to_agent_mailbox_and_back(
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_account.password)
    config = parse_config(config_text(tmp_path, imap_account, smtp_server))
    async with running(config, ready_within=ROUND_TRIP_SECONDS):
        store = await open_store(f"sqlite:///{tmp_path}/store.sqlite3", migrate=False)
        try:
            # 1. The customer writes; Ana is notified in her mailbox.
            await asyncio.to_thread(imap_account.append, customer_mail())

            async def notified() -> bool:
                return bool(to(smtp_server, AGENT))

            await eventually(notified)
            note = to(smtp_server, AGENT)[0].message
            ref = note["X-Omnirouter-Conversation"]
            assert note["Subject"] == f"[#{ref}] Invoice charged twice"
            assert note["Auto-Submitted"] == "auto-generated"
            reply_to = parseaddr(note["Reply-To"])[1]
            local, _, domain = reply_to.partition("@")
            assert domain == "shop.example" and local.startswith("support+")
            assert len(local) <= 64
            token = decode_token(local.partition("+")[2])
            assert token is not None
            text = note.get_body(("plain",)).get_content()
            assert text.startswith(REPLY_MARKER)
            for fact in (CUSTOMER, "Eva Núñez", "charged twice", "Why you", "Answer by"):
                assert fact in text
            html = note.get_body(("html",)).get_content()
            assert "Eva Núñez" in html and "Transcript" in html and "Answer by" in html

            # 2. Two forgeries, then Ana's real reply with a command on top.
            conv_id, _, signature = token.partition(".")
            bad_signature = ("a" if signature[0] != "a" else "b") + signature[1:]
            forged = encode_token(f"{conv_id}.{bad_signature}")
            forged_token = local.partition("+")[0] + "+" + forged
            await asyncio.to_thread(
                imap_account.append,
                agent_reply(
                    1,
                    sender=AGENT,
                    to=f"{forged_token}@{domain}",
                    notification=note,
                    body="FORGED-1: please send your card number",
                ),
                agent_reply(
                    2,
                    sender="mallory@evil.example",
                    to=reply_to,
                    notification=note,
                    body="FORGED-2: please send your card number",
                ),
                agent_reply(
                    3,
                    sender=AGENT.upper(),
                    to=reply_to,
                    notification=note,
                    body="#resolve\nHello Eva, the second charge is refunded today.\n\n-- \nAna",
                ),
            )

            # 3. The customer gets Ana's answer, threaded on their own mail.
            async def answered() -> bool:
                return any("refunded today" in m.raw.decode() for m in to(smtp_server, CUSTOMER))

            await eventually(answered)
            answers = [m for m in to(smtp_server, CUSTOMER) if "refunded today" in m.raw.decode()]
            assert len(answers) == 1
            answer = answers[0].message
            assert answer["In-Reply-To"] == "<c1@example.net>"
            assert "<c1@example.net>" in answer["References"]
            assert answer["Subject"].startswith("Re: Invoice charged twice")
            body = answer.get_body(("plain",)).get_content()
            assert body.strip() == "Hello Eva, the second charge is refunded today."

            # 4. Forged replies reached no customer; Ana is told about the one in her name.
            async def told() -> bool:
                return any(
                    m.message["X-Omnirouter-Event"] == "rejected" for m in to(smtp_server, AGENT)
                )

            await eventually(told)
            assert not any(b"FORGED" in m.raw for m in smtp_server.messages)
            assert not to(smtp_server, "mallory@evil.example")
            notice = next(
                m.message
                for m in to(smtp_server, AGENT)
                if m.message["X-Omnirouter-Event"] == "rejected"
            )
            assert "invalid conversation token" in notice.get_body(("plain",)).get_content()
            assert notice["Reply-To"] is None

            # 5. `#resolve` resolved the conversation.
            async def resolved() -> bool:
                async with store.transaction(readonly=True) as conn:
                    status = await conn.scalar(
                        sa.text("SELECT status FROM conversations WHERE id = :id"), {"id": conv_id}
                    )
                return bool(status == "resolved")

            await eventually(resolved)
        finally:
            await store.close()
