"""The webhook connector's harness: an agent's tool POSTing signed events over real HTTP.

The tool is told to forget an event by any answer but 503; after a 503 it
sends the same event again (that is how this channel offers it again). The
connector's route is served as the daemon serves it, on its HTTP listener.
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

import pytest
from aiohttp import web

from router.blobs import BlobStore
from router.config.people import SinkConfig
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, envelope_id
from router.http import Routes
from tests.connectors.contract.harness import Fed, Harness
from tests.connectors.webhook.helpers import (
    Receiver,
    delivery,
    post_event,
    receiver,
    webhook_config,
)
from tests.harness.common import free_port

TOKEN = "conv-42.abcdefghijklmnopqrstuvwx"
AGENT = "chloe"
MAX_RECORD_BYTES = 4096  # the bad input: an event whose envelope is larger than the bus takes
RESEND_PAUSE = 0.02  # the tool's pause before sending again after a 503


@dataclass
class Post:
    """One event as the tool sends it: again after each 503, until another answer."""

    event: dict[str, Any]
    answers: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def run(self, url: str) -> None:
        while True:
            status, _ = await post_event(url, self.event)
            self.answers.append(status)
            if status != 503:
                return
            await asyncio.sleep(RESEND_PAUSE)


class WebhookHarness(Harness):
    type = "webhook"
    name = "contract-hooks"
    max_record_bytes = MAX_RECORD_BYTES

    def __init__(self, tmp: Path, tool: Receiver) -> None:
        self.app = web.Application()
        self.tool = tool  # where deliveries to the agent go
        sinks = {
            AGENT: SinkConfig.model_construct(type="webhook", channel=self.name, url=tool.url())
        }
        services = Services(
            blobs=BlobStore(tmp / "blobs"),
            checkpoints=MemoryCheckpoints(),
            http=Routes(self.app),
            sinks=sinks,
        )
        factory = load_registry()[self.type].factory
        assert factory is not None
        cfg = webhook_config()
        self.connector = factory(self.name, cfg, services)
        self.path = cfg.events_path(self.name)
        self.posts: list[Post] = []
        self._n = count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def listen(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}{self.path}"

    def _send(self, event: dict[str, Any]) -> Post:
        post = Post(event)
        post.task = asyncio.create_task(post.run(self.url))
        self.posts.append(post)
        return post

    async def feed(self) -> Fed:
        n = next(self._n)
        event = {"id": f"evt-{n}", "agent": AGENT, "token": TOKEN, "type": "reply", "text": f"{n}"}
        return Fed(envelope_id(self.name, f"evt-{n}"), self._send(event))

    async def feed_bad(self) -> Fed:
        text = "x" * MAX_RECORD_BYTES
        event = {"id": "evt-large", "agent": AGENT, "token": TOKEN, "type": "reply", "text": text}
        return Fed(None, self._send(event))

    async def acked(self, fed: Fed) -> bool:
        post: Post = fed.ref
        return bool(post.answers) and post.answers[-1] != 503

    async def refused(self, fed: Fed) -> bool | None:
        post: Post = fed.ref
        return bool(post.answers) and 400 <= post.answers[-1] < 500

    def good_outbound(self) -> Envelope:
        return delivery().model_copy(update={"channel": self.name})

    def delivered(self) -> int:
        return len(self.tool.requests)

    def bad_outbound(self) -> Sequence[Envelope]:
        good = self.good_outbound()
        assert good.delivery is not None
        bob = good.delivery.model_copy(
            update={"agent": good.delivery.agent.model_copy(update={"id": "bob"})}
        )
        return [
            good.model_copy(update={"delivery": None}),  # not a delivery
            good.model_copy(update={"direction": "in"}),
            # for an agent this channel does not reach (their URL is nowhere in the config)
            good.model_copy(update={"delivery": bob}),
        ]

    async def close(self) -> None:
        for post in self.posts:
            if post.task is not None:
                post.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await post.task
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    async with receiver() as tool:
        harness = WebhookHarness(tmp, tool)
        await harness.listen()
        try:
            yield harness
        finally:
            await harness.close()
