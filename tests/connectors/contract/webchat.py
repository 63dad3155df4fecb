"""The web chat's harness: a widget's socket on the daemon's HTTP listener.

The widget is told to forget a message by a final `state` (`sent`, or `failed`
without `retry`: it was dead-lettered); on `failed` with `retry`, or a socket
the server closed, it reconnects and sends the same client id again (that is
how this channel offers it again). Each input is its own visitor, so two
inputs can wait for their acks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.blobs import BlobStore
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, envelope_id
from router.http import Routes
from tests.connectors.contract.harness import Fed, Harness
from tests.connectors.webchat.helpers import ORIGIN, chat_config, reply
from tests.harness.common import eventually, free_port

MAX_RECORD_BYTES = 4096  # the bad input: a message whose envelope is larger than the bus takes
RESEND_PAUSE = 0.02
WAIT = 10.0


@dataclass
class Visitor:
    """One widget sending one message until it gets a final state."""

    cid: str
    text: str
    states: list[dict[str, Any]] = field(default_factory=list)
    visitor: str | None = None
    session: str | None = None
    task: asyncio.Task[None] | None = None

    def final(self) -> dict[str, Any] | None:
        last = self.states[-1] if self.states else None
        return last if last is not None and not last.get("retry") else None

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                async with http.ws_connect(url, headers={"Origin": ORIGIN}) as ws:
                    await ws.send_json({"t": "hello", "session": self.session, "last": 0})
                    await ws.send_json({"t": "msg", "cid": self.cid, "text": self.text})
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        frame = msg.json()
                        if frame["t"] == "welcome":
                            self.session, self.visitor = frame["session"], frame["visitor"]
                        elif frame["t"] == "state" and frame["cid"] == self.cid:
                            self.states.append(frame)
                            if self.final() is not None:
                                return
                            break  # failed, retry: reconnect and send it again
            await asyncio.sleep(RESEND_PAUSE)


class WebchatHarness(Harness):
    type = "webchat"
    name = "web"
    max_record_bytes = MAX_RECORD_BYTES

    def __init__(self, tmp: Path, http: aiohttp.ClientSession) -> None:
        self.app = web.Application()
        self.checkpoints = MemoryCheckpoints()
        services = Services(
            blobs=BlobStore(tmp / "blobs"), checkpoints=self.checkpoints, http=Routes(self.app)
        )
        factory = load_registry()[self.type].factory
        assert factory is not None
        self.connector = factory(self.name, chat_config(sessions_per_hour=1000), services)
        self.http = http
        self.visitors: list[Visitor] = []
        self._n = count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.reply_to = "v_" + "R" * 22  # the session good_outbound replies in

    async def listen(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/chat"

    async def _send(self, text: str) -> Visitor:
        visitor = Visitor(f"c{next(self._n)}", text)
        visitor.task = asyncio.create_task(visitor.run(self.http, self.url))
        self.visitors.append(visitor)
        await eventually(lambda: visitor.visitor is not None, WAIT)  # its id names the envelope
        return visitor

    async def feed(self) -> Fed:
        v = await self._send("hello")
        return Fed(envelope_id(self.name, f"{v.visitor}:{v.cid}"), v)

    async def feed_bad(self) -> Fed:
        return Fed(None, await self._send("x" * MAX_RECORD_BYTES))

    async def acked(self, fed: Fed) -> bool:
        visitor: Visitor = fed.ref
        return visitor.final() is not None

    async def refused(self, fed: Fed) -> bool | None:
        final = fed.ref.final()
        return final is not None and final["state"] == "failed"

    def good_outbound(self) -> Envelope:
        return reply(self.reply_to, "hello from Chloé").model_copy(update={"channel": self.name})

    def bad_outbound(self) -> Sequence[Envelope]:
        good = self.good_outbound()
        return [
            good.model_copy(update={"direction": "in"}),
            good.model_copy(update={"thread_key": "not-a-session"}),
            good.model_copy(update={"kind": "message"}),
            good.model_copy(update={"text": ""}),
        ]

    def delivered(self) -> int:
        return sum(1 for (_, key) in self.checkpoints.values if key.startswith("o:"))

    async def close(self) -> None:
        for v in self.visitors:
            if v.task is not None:
                v.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await v.task
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as http:
        harness = WebchatHarness(tmp, http)
        await harness.listen()
        try:
            yield harness
        finally:
            await harness.close()
