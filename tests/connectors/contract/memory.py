"""The in-memory connector's harness: inputs offered in memory, acks read off the connector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path

import pytest

from router.blobs import BlobStore
from router.connector import Services
from router.connector.testing import (
    MemoryChannelConfig,
    MemoryCheckpoints,
    MemoryConnector,
    memory_spec,
)
from router.envelope import Envelope
from tests.connectors.contract.harness import Fed, Harness
from tests.router.test_daemon import message


class MemoryHarness(Harness):
    type = "memory"
    name = "contract-memory"

    def __init__(self, tmp: Path) -> None:
        built: dict[str, MemoryConnector] = {}
        spec = memory_spec(built)
        assert spec.factory is not None
        services = Services(blobs=BlobStore(tmp / "blobs"), checkpoints=MemoryCheckpoints())
        spec.factory(self.name, MemoryChannelConfig(), services)
        self.connector = self.memory = built[self.name]
        self._n = count(1)

    async def feed(self) -> Fed:
        env = message(self.name, f"m{next(self._n)}")
        return Fed(env.id, self.memory.offer(env))

    async def feed_bad(self) -> Fed:
        return Fed(None, self.memory.offer_raw(b'{"v": 1, "kind": "not a kind"}'))

    async def acked(self, fed: Fed) -> bool:
        outcome = self.memory.outcome(fed.ref)
        return outcome is not None and not outcome.retriable

    async def refused(self, fed: Fed) -> bool | None:
        outcome = self.memory.outcome(fed.ref)
        return outcome is not None and outcome.error is not None and not outcome.retriable

    def good_outbound(self) -> Envelope:
        return message(self.name, "r3").model_copy(update={"direction": "out", "kind": "reply"})

    def delivered(self) -> int:
        return sum(1 for e in self.memory.sent if e.direction == "out" and e.channel == self.name)

    def bad_outbound(self) -> Sequence[Envelope]:
        out = message(self.name, "r1").model_copy(update={"direction": "out", "kind": "reply"})
        return [
            message(self.name, "r2"),  # an inbound envelope
            out.model_copy(update={"channel": "elsewhere"}),
        ]


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    yield MemoryHarness(tmp)
