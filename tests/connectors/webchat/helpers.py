"""Shared helpers for the web chat's tests: the connector on a real HTTP listener, a stand-in
for the channel runner that acks what it takes, and a widget-like socket client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from connectors.webchat.config import WebchatChannelConfig
from connectors.webchat.connector import WebchatConnector
from router.blobs import BlobStore
from router.connector import DONE, Incoming, Outcome, Services
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, Sender, envelope_id
from router.http import Routes
from tests.harness.common import eventually, free_port

KEY = "session-key-0123456789abcdef"
OLD_KEY = "previous-key-0123456789abcdef"
SHOP_KEY = "shop-identity-secret-0123456789"
ORIGIN = "https://shop.example.com"
WAIT = 10.0


def chat_config(**extra: Any) -> WebchatChannelConfig:
    return WebchatChannelConfig.model_validate(
        {
            "session_key": KEY,
            "identity_secret": SHOP_KEY,
            "allowed_origins": [ORIGIN],
            **extra,
        }
    )


@dataclass
class Runner:
    """Takes the connector's intake as the channel runner does; acks with `outcome`
    (None: holds every ack until `release()`)."""

    connector: WebchatConnector
    outcome: Outcome | None = DONE
    taken: list[Envelope] = field(default_factory=list)
    held: list[Incoming] = field(default_factory=list)

    async def run(self) -> None:
        async for item in self.connector.receive():
            self.taken.append(item.envelope)
            if self.outcome is None:
                self.held.append(item)
            else:
                await item.ack(self.outcome)

    async def release(self, outcome: Outcome = DONE) -> None:
        held, self.held = self.held, []
        for item in held:
            await item.ack(outcome)


@dataclass
class Chat:
    connector: WebchatConnector
    runner: Runner
    url: str  # http://127.0.0.1:port/chat
    http: aiohttp.ClientSession
    clients: list[Client] = field(default_factory=list)

    async def open(self, origin: str = ORIGIN, via: str | None = None) -> Client:
        """A socket; `via`: the X-Forwarded-For a proxy in front would add."""
        headers = {"Origin": origin}
        if via is not None:
            headers["X-Forwarded-For"] = via
        ws = await self.http.ws_connect(self.url, headers=headers)
        self.clients.append(Client(ws))
        return self.clients[-1]

    async def close(self) -> None:
        for client in self.clients:
            await client.ws.close()

    async def hello(
        self, session: str | None = None, last: int = 0, via: str | None = None, **extra: Any
    ) -> Client:
        client = await self.open(via=via)
        await client.send({"t": "hello", "session": session, "last": last, **extra})
        return client

    async def reply(self, visitor: str, text: str, native: str | None = None) -> None:
        result = await self.connector.send(reply(visitor, text, native))
        assert result.status == "sent", result


@dataclass
class Client:
    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def next(self, t: str | None = None) -> dict[str, Any]:
        """The next frame (of type `t`); AssertionError if the socket closes first."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), WAIT)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {msg.type} {self.ws.close_code} {msg.extra}")
            frame: dict[str, Any] = msg.json()
            self.frames.append(frame)
            if t is None or frame["t"] == t:
                return frame

    async def closed(self) -> tuple[int | None, str]:
        """Read until the server closes the socket: its close code and reason."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), WAIT)
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())
                continue
            # The code the server sent (close_code may say 1006 when it did not wait for ours).
            code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
            return code, str(msg.extra or "")

    async def say(self, cid: str, text: str) -> dict[str, Any]:
        """Send a visitor message; the `state` frame answering it."""
        await self.send({"t": "msg", "cid": cid, "text": text})
        while True:
            frame = await self.next("state")
            if frame["cid"] == cid:
                return frame

    def messages(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["t"] == "msg"]


def reply(visitor: str, text: str, native: str | None = None) -> Envelope:
    return Envelope(
        id=envelope_id("web", native or f"reply:{text}"),
        kind="reply",
        direction="out",
        channel="web",
        channel_type="webchat",
        thread_key=visitor,
        sender=Sender(address="chloe", name="Chloé", role="agent"),
        received_at=datetime.now(UTC),
        text=text,
    )


@asynccontextmanager
async def chat(
    tmp: Path,
    *,
    outcome: Outcome | None = DONE,
    opens_at: Callable[[str, datetime], datetime] | None = None,
    **extra: Any,
) -> AsyncIterator[Chat]:
    """The connector on a real listener; `opens_at` stands in for the channel's business
    hours (default: always open)."""
    app = web.Application()
    services = Services(
        blobs=BlobStore(tmp / "blobs"),
        checkpoints=MemoryCheckpoints(),
        http=Routes(app),
        opens_at=opens_at or (lambda _channel, now: now),
    )
    connector = WebchatConnector("web", chat_config(**extra), services)
    runner_app = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner_app.setup()
    port = free_port()
    await web.TCPSite(runner_app, "127.0.0.1", port).start()
    await connector.start()
    runner = Runner(connector, outcome)
    task = asyncio.create_task(runner.run())
    try:
        async with aiohttp.ClientSession() as http:
            c = Chat(connector, runner, f"http://127.0.0.1:{port}/chat", http)
            try:
                yield c
            finally:
                await c.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await connector.stop()
        await runner_app.cleanup()


async def until(check: Any) -> None:
    await eventually(check, WAIT)
