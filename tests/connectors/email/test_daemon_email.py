"""The email channel inside the daemon (embedded bus, SQLite store, Dovecot, aiosmtpd)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import structlog.testing

from router.config import parse_config
from router.envelope import Envelope, Sender, encode, envelope_id
from router.store import open_store
from tests.connectors.email.helpers import daemon_config, mail
from tests.harness.common import eventually
from tests.harness.daemon import get, running
from tests.harness.dovecot import Dovecot, ImapAccount
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


async def test_blobs_max_attachment_bytes_limits_an_email_channel_without_its_own(
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_account.password)
    blobs = f'blobs: {{path: "{tmp_path}/blobs"}}'
    text = config_text(tmp_path, imap_account, smtp_server)
    assert blobs in text
    cfg = parse_config(text.replace(blobs, blobs[:-1] + ", max_attachment_bytes: 100}"))
    zipped = (
        b"From: ana@example.net\r\nTo: support@shop.example\r\nSubject: the file\r\n"
        b"Message-ID: <big@example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b'Content-Type: application/zip\r\nContent-Disposition: attachment; filename="big.zip"'
        b"\r\n\r\n" + b"x" * 1000 + b"\r\n--b--\r\n"
    )
    async with running(cfg):
        store = await open_store(f"sqlite:///{tmp_path}/store.sqlite3", migrate=False)
        try:
            await asyncio.to_thread(imap_account.append, zipped)
            expected = envelope_id("support-email", "<big@example.net>")

            async def stored() -> dict[str, Any] | None:
                async with store.transaction(readonly=True) as conn:
                    row = await conn.execute(
                        sa.text("SELECT envelope FROM messages WHERE id = :id"), {"id": expected}
                    )
                    found = row.scalar()
                return None if found is None else dict(orjson.loads(found))

            await eventually(stored)
            envelope = await stored()
        finally:
            await store.close()
    assert envelope is not None
    assert envelope["attachments"] == []
    [skipped] = envelope["meta"]["skipped_parts"]
    assert skipped["name"] == "big.zip" and skipped["size"] == 1000
    assert skipped["reason"] == "larger than max_attachment_bytes (100)"


async def test_a_wrong_password_is_said_once_and_not_retried_within_the_minute(
    dovecot: Dovecot,
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "not-" + imap_account.password)
    attempts = 3
    text = config_text(tmp_path, imap_account, smtp_server).replace(
        "    type: email\n", f"    type: email\n    reconnect: {{attempts: {attempts}}}\n"
    )
    cfg = parse_config(text)
    with structlog.testing.capture_logs() as logs:
        async with running(cfg) as daemon:
            assert daemon.http is not None
            readyz = f"http://127.0.0.1:{daemon.http.port}/readyz"
            await eventually(lambda: daemon.channels_down() != {}, 20)
            status, body = await asyncio.to_thread(get, readyz)
            # The daemon has given up until `after_refusal` (10 minutes): count now (Dovecot
            # logs a refused login once the connection is gone, a moment later).
            await eventually(lambda: dovecot.failed_logins(imap_account.username) >= 1)
            refused = dovecot.failed_logins(imap_account.username)
            [runner] = daemon.channels
            assert runner.down is not None
            wait = (runner.down.next_attempt - runner.down.since).total_seconds()
    assert status == 503
    down = orjson.loads(body)["channels_down"]
    assert list(down) == ["support-email"]
    assert "AUTHENTICATIONFAILED" in down["support-email"]["reason"]
    assert imap_account.username in down["support-email"]["reason"]
    assert 1 <= refused <= attempts  # Dovecot saw the one attempt, not a storm
    assert wait >= 60  # and the next one is not within the minute
    said = [e for e in logs if e.get("channel") == "support-email" and e["log_level"] != "debug"]
    assert [(e["event"], e["log_level"]) for e in said] == [("channel down", "error")]
    assert said[0]["reason"] == down["support-email"]["reason"]
