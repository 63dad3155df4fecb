"""A Telegram connector wired to the fake Bot API, as the daemon wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.telegram.client import Pacer
from connectors.telegram.config import TelegramChannelConfig
from connectors.telegram.connector import TelegramConnector
from router.blobs import BlobStore
from router.config.people import SinkConfig
from router.connector import Services
from router.connector.testing import MemoryCheckpoints
from router.envelope import Delivery, Envelope, Sender, envelope_id, now_utc
from router.http import Routes
from tests.harness.common import free_port
from tests.harness.telegram import FakeBotApi

CHANNEL = "tg"
SECRET = "hook-secret_123"
AGENT_ID = "chloe"
AGENT_USER = 777
HOOK_PATH = "/telegram/updates"


def telegram_config(api: FakeBotApi, mode: str = "polling", **extra: Any) -> TelegramChannelConfig:
    data: dict[str, Any] = {
        "bot_token": api.token,
        "mode": mode,
        "api_url": f"http://127.0.0.1:{api.port}",
        "polling": {"timeout": "1s"},
        **extra,
    }
    if mode == "webhook":
        data["webhook"] = {
            "path": HOOK_PATH,
            "public_url": "https://support.example.com/telegram/updates",
            "secret_token": SECRET,
        }
    return TelegramChannelConfig.model_validate(data)


def fast_pacer() -> Pacer:
    """The real pacing's shape at a tenth of the time: tests stay short."""
    return Pacer(per_chat=0.1, per_group=(20, 6.0), overall=(30, 0.1))


@dataclass
class Wired:
    connector: TelegramConnector
    checkpoints: MemoryCheckpoints
    blobs: BlobStore
    url: str  # the webhook's URL on our listener ("" in polling mode)


@asynccontextmanager
async def wired(
    api: FakeBotApi,
    tmp: Path,
    mode: str = "polling",
    pacer: Pacer | None = None,
    queues: list[str] | None = None,
) -> AsyncIterator[Wired]:
    app = web.Application()
    checkpoints = MemoryCheckpoints()
    blobs = BlobStore(tmp / "blobs")
    sinks = {
        AGENT_ID: SinkConfig.model_construct(
            type="telegram", channel=CHANNEL, address=str(AGENT_USER), url=None, accepts=None
        )
    }
    services = Services(
        blobs=blobs, checkpoints=checkpoints, http=Routes(app), sinks=sinks, queues=queues or []
    )
    connector = TelegramConnector(
        CHANNEL, telegram_config(api, mode), services, pacer=pacer or fast_pacer()
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Wired(connector, checkpoints, blobs, f"http://127.0.0.1:{port}{HOOK_PATH}")
    finally:
        await connector.stop()
        await runner.cleanup()


def reply(chat_id: int, text: str, *, message_id: int | None = None, n: int = 0) -> Envelope:
    """An agent's reply to the customer in `chat_id`, as the router puts it on its topic."""
    return Envelope(
        id=envelope_id(CHANNEL, f"out:{chat_id}:{n}:{text}"),
        kind="reply",
        direction="out",
        channel=CHANNEL,
        channel_type="telegram",
        thread_key=str(chat_id),
        sender=Sender(address=AGENT_ID, role="agent"),
        received_at=now_utc(),
        text=text,
        reply_context={"chat_id": chat_id, **({"message_id": message_id} if message_id else {})},
    )


TOKEN = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwx"  # a conversation token
CONVERSATION = TOKEN.split(".")[0]


def delivery(agent: str | dict[str, Any] = AGENT_ID, **extra: Any) -> Envelope:
    """An assignment for `agent` (an id, or the delivery's whole `agent` part), as the
    router puts it on `omni.agent.<channel>`."""
    agent_part = {"id": agent} if isinstance(agent, str) else agent
    agent = agent_part["id"]
    context = {
        "customer": {
            "id": "cust-1",
            "name": "Eva",
            "tier": "gold",
            "tags": [],
            "identities": [
                {"kind": "telegram", "value": "42"},
                {"kind": "email", "value": "e@x.es"},
            ],
        },
        "conversation": {"id": CONVERSATION, "ref": "K7M2", "channel": CHANNEL, "priority": "high"},
        "transcript": [{"text": "My invoice was charged twice", "from": {"name": "Eva"}}],
        "other_conversations": [{"ref": "A1B2", "channel": "support-email", "status": "resolved"}],
    }
    return Envelope(
        id=envelope_id(f"agent:{agent}", "in-1:assigned:0"),
        kind="message",
        direction="out",
        channel=CHANNEL,
        channel_type="telegram",
        thread_key=CONVERSATION,
        conversation_id=CONVERSATION,
        sender=Sender(address="omnirouter", name="omnirouter", role="system"),
        received_at=now_utc(),
        text="Assigned: conversation #K7M2",
        delivery=Delivery.model_validate(
            {
                "event": "assigned",
                "agent": agent_part,
                "sink": {"type": "telegram", "address": str(AGENT_USER)},
                "token": TOKEN,
                "reason": {"rule": "last_agent", "detail": "served Eva before"},
                "sla_due": datetime(2026, 1, 2, 10, 30, tzinfo=UTC),
                "context": context,
                **extra,
            }
        ),
    )
