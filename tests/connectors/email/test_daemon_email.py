"""The email channel inside the daemon (embedded bus, SQLite store, Dovecot, aiosmtpd)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from router.config import parse_config
from router.envelope import Envelope, Sender, encode, envelope_id
from router.store import open_store
from tests.connectors.email.helpers import daemon_config, mail
from tests.harness.common import eventually
from tests.harness.daemon import running
from tests.harness.dovecot import ImapAccount
from tests.harness.smtp import CapturingSmtp

pytestmark = pytest.mark.imap


def config_text(tmp: Path, account: ImapAccount, smtp: CapturingSmtp) -> str:
    return daemon_config(tmp, account, smtp)


async def test_mail_reaches_the_store_and_replies_go_out(
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_account.password)
    cfg = parse_config(config_text(tmp_path, imap_account, smtp_server))
    async with running(cfg) as daemon:
        store = await open_store(f"sqlite:///{tmp_path}/store.sqlite3", migrate=False)

        async def stored() -> set[str]:
            async with store.transaction(readonly=True) as conn:
                return {r[0] for r in await conn.execute(sa.text("SELECT id FROM messages"))}

        try:
            await asyncio.to_thread(imap_account.append, mail(1))
            expected = envelope_id("support-email", "<m1@example.net>")

            async def arrived() -> bool:
                return expected in await stored()

            await eventually(arrived)
            reply = Envelope(
                id=envelope_id("support-email", "reply-1"),
                kind="reply",
                direction="out",
                channel="support-email",
                channel_type="email",
                thread_key="<m1@example.net>",
                sender=Sender(address="agent@shop.example", role="agent"),
                received_at=datetime.now(UTC),
                subject="message 1",
                text="Thanks, on it.",
                meta={"to": ["ana@example.net"], "in_reply_to": "<m1@example.net>"},
            )
            assert daemon.bus is not None
            await daemon.bus.produce(
                daemon.topics.outbound("support-email"), reply.bus_key(), encode(reply)
            )

            async def sent() -> bool:
                return len(smtp_server.messages) == 1

            await eventually(sent)
            got = smtp_server.messages[0].message
            assert got["In-Reply-To"] == "<m1@example.net>"
            assert got["Subject"] == "Re: message 1"
        finally:
            await store.close()
