"""Shared helpers for the email connector's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.email.client import SmtpSender
from connectors.email.config import EmailChannelConfig
from connectors.email.connector import EmailConnector
from router.blobs import BlobStore
from router.connector import Incoming, Rejected, Services
from router.connector.testing import MemoryCheckpoints
from router.envelope import Automated, Envelope, Sender, envelope_id
from tests.harness.daemon import embedded_config

if TYPE_CHECKING:
    from tests.harness.dovecot import ImapAccount
    from tests.harness.smtp import CapturingSmtp


def email_config(
    *,
    imap_port: int = 143,
    smtp_port: int = 25,
    user: str = "u",
    password: str = "p",
    imap: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None,
    **extra: Any,
) -> EmailChannelConfig:
    return EmailChannelConfig.model_validate(
        {
            "imap": {
                "host": "127.0.0.1",
                "port": imap_port,
                "security": "none",
                "username": user,
                "password": password,
                "first_start": "all",
                "timeout": "10s",
                **(imap or {}),
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "from_address": "support@shop.example",
                "from_name": "Shop Support",
                "timeout": "5s",
                **(smtp or {}),
            },
            **extra,
        }
    )


def connector(
    account: ImapAccount,
    tmp: Path,
    checkpoints: MemoryCheckpoints,
    *,
    limits: dict[str, Any] | None = None,
    **imap: Any,
) -> EmailConnector:
    """An email connector reading `account`'s mailbox (`imap` overrides its IMAP settings)."""
    cfg = email_config(
        imap_port=account.port,
        user=account.username,
        password=account.password,
        imap={"host": account.host, **imap},
        limits=limits or {},
    )
    services = Services(blobs=BlobStore(tmp / "blobs"), checkpoints=checkpoints)
    return EmailConnector("support-email", cfg, services)


async def take(gen: AsyncIterator[Incoming | Rejected], n: int, seconds: float = 10) -> list[Any]:
    """The next `n` items, each acked (as the daemon does once it is on the bus)."""
    items = []
    async with asyncio.timeout(seconds):
        while len(items) < n:
            item = await anext(gen)
            await item.ack()
            items.append(item)
    return items


async def take_then_stop(conn: Any, n: int, seconds: float = 10) -> list[Any]:
    """The first `n` items `conn` takes in; then its intake is closed and it is stopped."""
    gen = conn.receive()
    try:
        return await take(gen, n, seconds)
    finally:
        await gen.aclose()
        await conn.stop()


async def stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def ids(items: list[Any]) -> list[str]:
    return [i.envelope.meta["message_id"] for i in items]


def reply(
    n: str = "r1",
    *,
    to: list[str] | None = None,
    in_reply_to: str | None = "<latest@example.net>",
    references: list[str] | None = None,
    auto: bool = False,
    **meta: object,
) -> Envelope:
    """An agent's reply to a customer, as the router puts it on the outbound topic: the
    reply context our intake wrote for the customer's latest message, handed back."""
    context = {
        "to": ["customer@example.net"] if to is None else to,
        "message_id": in_reply_to,
        "references": ["<root@example.net>", "<ours@shop.example>"]
        if references is None
        else references,
    }
    return Envelope(
        id=envelope_id("support-email", n),
        kind="reply",
        direction="out",
        channel="support-email",
        channel_type="email",
        thread_key="<root@example.net>",
        sender=Sender(address="ana.agent@shop.example", name="Ana", role="agent"),
        received_at=datetime.now(UTC),
        subject="Your order #10442",
        text="We are sending the mug today.",
        html="<p>We are sending the <b>mug</b> today.</p>",
        automated=Automated(auto=True) if auto else None,
        reply_context=context,
        meta={"conversation_ref": "k7m2q9ta", **meta},
    )


def sender_for(
    server: CapturingSmtp,
    checkpoints: MemoryCheckpoints | None = None,
    *,
    blobs: BlobStore | None = None,
    **smtp: Any,
) -> SmtpSender:
    """A sender to the capturing `server` (`smtp` overrides its SMTP settings)."""
    cfg = email_config(smtp_port=server.port, smtp={"host": server.host, **smtp})
    return SmtpSender(
        "support-email", cfg.smtp, checkpoints or MemoryCheckpoints(), timedelta(hours=1), blobs
    )


def mail(
    n: int | str, *, sender: str = "ana@example.net", subject: str | None = None, extra: str = ""
) -> bytes:
    return (
        f"From: Ana <{sender}>\r\nTo: support@shop.example\r\n"
        f"Subject: {subject or f'message {n}'}\r\nMessage-ID: <m{n}@example.net>\r\n"
        f"Date: Mon, 3 Mar 2025 10:00:00 +0000\r\n{extra}\r\nbody {n}\r\n"
    ).encode()


def daemon_config(
    tmp: Path, account: Any, smtp: Any, *, smtp_extra: str = "", rest: str = ""
) -> str:
    """A daemon config with one enabled email channel on the harness's Dovecot and SMTP."""
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: support-email
    type: email
    email:
      imap:
        host: 127.0.0.1
        port: {account.port}
        security: none
        username: {account.username}
        password: ${{TEST_IMAP_PASSWORD}}
        first_start: all
      smtp:
        host: 127.0.0.1
        port: {smtp.port}
        security: none
        from_address: support@shop.example
{smtp_extra}{rest}"""
    )
