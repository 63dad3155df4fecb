"""Shared helpers for the webhook connector's tests: a real HTTP receiver, signed POSTs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from connectors.webhook.config import WebhookChannelConfig
from connectors.webhook.connector import WebhookConnector
from connectors.webhook.outbound import signature
from router.blobs import BlobStore
from router.config.people import SinkConfig
from router.connector import SendResult, Services
from router.connector.testing import MemoryCheckpoints
from router.envelope import Delivery, Envelope, Sender, envelope_id
from router.http import Routes
from tests.harness.common import free_port

SECRET = "s3cret-signing-key-for-tests"
KEY = SECRET.encode()
MADE_AT = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def webhook_config(**extra: Any) -> WebhookChannelConfig:
    return WebhookChannelConfig.model_validate({"secret": SECRET, **extra})


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path_qs: str

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """An agent's tool on 127.0.0.1: records every POST, answers `status` (after `delay`)."""

    status: int = 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hooks/T0001/B0002/XyZsecretPart") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.read(), request.path_qs))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="ok" if self.status < 300 else "nope")


@asynccontextmanager
async def receiver(**kw: Any) -> AsyncIterator[Receiver]:
    recv = Receiver(**kw)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    recv.port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", recv.port)
    await site.start()
    try:
        yield recv
    finally:
        await runner.cleanup()


@dataclass
class Listening:
    """A webhook connector whose events route is served on 127.0.0.1."""

    connector: WebhookConnector
    port: int
    sinks: dict[str, SinkConfig]  # as the daemon lends it: agent id -> sink

    def reach(self, agent_id: str, url: str | None, channel: str | None = None) -> None:
        """Say in the config where `agent_id` is reached (unvalidated: tests use bad URLs)."""
        self.sinks[agent_id] = SinkConfig.model_construct(
            type="webhook", channel=channel or self.connector.name, url=url
        )

    def url(self, path: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}{path or self.connector.path}"


@asynccontextmanager
async def listening(tmp: Path, name: str = "agent-hooks", **kw: Any) -> AsyncIterator[Listening]:
    """The connector built as the daemon builds it (its route on a real listener), started."""
    cfg = kw.pop("cfg", None) or webhook_config()
    app = web.Application()
    sinks: dict[str, SinkConfig] = {}
    services = Services(
        blobs=BlobStore(tmp / "blobs"),
        checkpoints=MemoryCheckpoints(),
        http=Routes(app),
        sinks=sinks,
    )
    connector = WebhookConnector(name, cfg, services, **kw)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await connector.start()
    try:
        hooks = Listening(connector, port, sinks)
        hooks.reach("chloe", "http://127.0.0.1:9/not-used")  # an agent this channel reaches
        yield hooks
    finally:
        await connector.stop()
        await runner.cleanup()


def signed_headers(body: bytes, *, key: bytes = KEY, at: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-Omnirouter-Timestamp": str(timestamp),
        "X-Omnirouter-Signature": signature(key, timestamp, body),
    }


async def post_event(
    url: str,
    event: dict[str, Any] | bytes,
    *,
    headers: dict[str, str] | None = None,
    key: bytes = KEY,
) -> tuple[int, Any]:
    """POST an event (signed unless `headers` are given); the status and the JSON answer."""
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body,
            headers=headers if headers is not None else signed_headers(body, key=key),
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def delivery(**extra: Any) -> Envelope:
    context = {
        "customer": {
            "id": "cust-1",
            "name": "Eva",
            "identities": [{"kind": "email", "value": "e"}],
        },
        "conversation": {"id": "conv-1", "ref": "K7M2", "channel": "support-email"},
        "transcript": [{"text": "My invoice was charged twice"}],
        "other_conversations": [],
    }
    return Envelope(
        id=envelope_id("agent:chloe", "in-1:assigned:0"),
        kind="message",
        direction="out",
        channel="agent-hooks",
        channel_type="webhook",
        thread_key="conv-1",
        conversation_id="conv-1",
        sender=Sender(address="omnirouter", name="omnirouter", role="system"),
        received_at=MADE_AT,
        subject="[#K7M2] Invoice charged twice",
        text="Assigned: conversation #K7M2 on support-email",
        delivery=Delivery.model_validate(
            {
                "event": "assigned",
                "agent": {"id": "chloe", "name": "Chloé Martin"},
                "sink": {"type": "webhook", "address": None},
                "token": "conv-1.signature",
                "reason": {"rule": "best_qualified"},
                "note": None,
                "context": context,
                **extra,
            }
        ),
    )


async def send(hooks: Listening, url: str | None) -> SendResult:
    """Send the delivery to chloe, whose sink (in the config, never on the bus) is `url`."""
    hooks.reach("chloe", url)
    return await hooks.connector.send(delivery())
