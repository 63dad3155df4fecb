"""The Telegram connector's harness: a bot polling the fake Bot API (tests/harness/telegram.py).

The channel forgets an update once the offset kept in the checkpoints passes it
(Telegram hears of it on the next getUpdates); one not taken is returned by the
next getUpdates from that offset, so the channel offers it again by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from connectors.telegram.config import TelegramChannelConfig
from router.blobs import BlobStore
from router.config.people import SinkConfig
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, envelope_id
from tests.connectors.contract.harness import Fed, Harness
from tests.connectors.telegram.helpers import AGENT_ID, AGENT_USER, delivery, reply
from tests.harness.telegram import FakeBotApi, fake_bot_api, message

CUSTOMER = 42


class TelegramHarness(Harness):
    type = "telegram"
    name = "tg"  # the helpers' envelopes name this channel

    def __init__(self, tmp: Path, api: FakeBotApi) -> None:
        self.api = api
        self.checkpoints = MemoryCheckpoints()
        cfg = TelegramChannelConfig.model_validate(
            {
                "bot_token": api.token,
                "api_url": f"http://127.0.0.1:{api.port}",
                "polling": {"timeout": "1s"},
            }
        )
        sinks = {
            AGENT_ID: SinkConfig.model_construct(
                type="telegram", channel=self.name, address=str(AGENT_USER), url=None
            )
        }
        services = Services(
            blobs=BlobStore(tmp / "blobs"), checkpoints=self.checkpoints, sinks=sinks
        )
        factory = load_registry()[self.type].factory
        assert factory is not None
        self.connector = factory(self.name, cfg, services)

    async def feed(self) -> Fed:
        update = message(self.api, CUSTOMER, "hello")
        update_id = self.api.add_update(update)
        native = f"{CUSTOMER}:{update['message']['message_id']}"
        return Fed(envelope_id(self.name, native), update_id)

    async def feed_bad(self) -> Fed:
        # a message with neither chat nor sender: no envelope can say where it came from
        update_id = self.api.add_update({"message": {"message_id": 1, "date": 0, "text": "?"}})
        return Fed(None, update_id)

    async def acked(self, fed: Fed) -> bool:
        offset = await self.checkpoints.get_checkpoint(self.name, "offset")
        return offset is not None and int(offset) > fed.ref

    def good_outbound(self) -> Envelope:
        return reply(CUSTOMER, "We are on it")

    def bad_outbound(self) -> Sequence[Envelope]:
        good = self.good_outbound()
        return [
            good.model_copy(update={"direction": "in"}),
            good.model_copy(update={"reply_context": {}, "thread_key": "not-a-chat"}),
            good.model_copy(update={"text": "  "}),
            delivery(agent="bob"),  # an agent this channel does not reach
        ]

    def delivered(self) -> int:
        return len(self.api.sent)


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    async with fake_bot_api() as api:
        yield TelegramHarness(tmp, api)
