"""The email connector's harness: mail appended to a real Dovecot mailbox, SMTP to aiosmtpd.

The channel forgets a message when its checkpoint (the last UID taken in)
passes it; one not taken is offered again on the next connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from connectors.email.imap import Position
from router.blobs import BlobStore
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, envelope_id
from tests.connectors.contract.harness import Fed, Harness, Items, close_items
from tests.connectors.email.helpers import email_config, mail, reply
from tests.harness.dovecot import ImapAccount
from tests.harness.smtp import CapturingSmtp

MAX_MESSAGE_BYTES = 1024  # the least the config allows; the bad input is larger


class EmailHarness(Harness):
    type = "email"
    name = "contract-email"

    def __init__(self, tmp: Path, account: ImapAccount, smtp: CapturingSmtp) -> None:
        self.account = account
        self.smtp = smtp
        self.checkpoints = MemoryCheckpoints()
        cfg = email_config(
            imap_port=account.port,
            user=account.username,
            password=account.password,
            imap={"host": account.host},
            smtp_port=smtp.port,
            smtp={"host": smtp.host},
            limits={"max_message_bytes": MAX_MESSAGE_BYTES},
        )
        factory = load_registry()[self.type].factory
        assert factory is not None
        services = Services(blobs=BlobStore(tmp / "blobs"), checkpoints=self.checkpoints)
        self.connector = factory(self.name, cfg, services)
        self._uids = 0  # a fresh mailbox: Dovecot gives UIDs 1, 2, ...

    async def _append(self, raw: bytes) -> int:
        await asyncio.to_thread(self.account.append, raw)
        self._uids += 1
        return self._uids

    async def feed(self) -> Fed:
        n = self._uids + 1
        uid = await self._append(mail(n))
        return Fed(envelope_id(self.name, f"<m{n}@example.net>"), uid)

    async def feed_bad(self) -> Fed:
        too_large = mail("big") + (b"y" * 78 + b"\r\n") * (MAX_MESSAGE_BYTES // 80 + 1)
        return Fed(None, await self._append(too_large))

    async def acked(self, fed: Fed) -> bool:
        stored = await self.checkpoints.get_checkpoint(self.name, "imap:INBOX")
        position = Position.load(stored)
        return position is not None and position.last_uid >= fed.ref

    async def offer_again(self, items: Items) -> Items:
        await close_items(items)
        await self.connector.stop()
        await self.connector.start()
        return self.connector.receive()

    def good_outbound(self) -> Envelope:
        return reply()

    def delivered(self) -> int:
        return len(self.smtp.messages)

    def bad_outbound(self) -> Sequence[Envelope]:
        out = reply()
        return [
            out.model_copy(update={"meta": {}, "reply_context": {}}),  # nobody to send it to
            out.model_copy(update={"reply_context": {**out.reply_context, "to": 5}}),
            out.model_copy(update={"direction": "in"}),
        ]


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    account = request.getfixturevalue("imap_account")
    smtp = request.getfixturevalue("smtp_server")
    yield EmailHarness(tmp, account, smtp)
