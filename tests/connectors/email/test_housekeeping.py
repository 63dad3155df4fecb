"""Old markers are pruned: automatic-message times after their window, seen markers later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.email.connector import EmailConnector
from router.blobs import BlobStore
from router.connector import Services
from router.store import open_store
from tests.connectors.email.helpers import email_config


async def test_markers_are_pruned_past_their_windows_and_positions_kept(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        cfg = email_config(auto_reply_window="1h", seen_retention="30d")
        mail = EmailConnector(
            "support-email", cfg, Services(blobs=BlobStore(tmp_path / "blobs"), checkpoints=store)
        )
        for key in ("seen:abc", "auto:eva@example.com", "imap:INBOX", "ref:K7M2P9Q"):
            await store.set_checkpoint("support-email", key, "x")
        await store.set_checkpoint("other-email", "auto:eva@example.com", "x")
        now = datetime.now(UTC)

        async def kept(name: str = "support-email") -> set[str]:
            keys = ("seen:abc", "auto:eva@example.com", "imap:INBOX", "ref:K7M2P9Q")
            return {k for k in keys if await store.get_checkpoint(name, k) is not None}

        assert await mail.prune(now + timedelta(minutes=30)) == 0
        assert await mail.prune(now + timedelta(hours=2)) == 1
        assert await kept() == {"seen:abc", "imap:INBOX", "ref:K7M2P9Q"}
        assert await mail.prune(now + timedelta(days=31)) == 1
        # The mailbox position and conversation references are never pruned; nor is
        # another channel's state.
        assert await kept() == {"imap:INBOX", "ref:K7M2P9Q"}
        assert await kept("other-email") == {"auto:eva@example.com"}
    finally:
        await store.close()
