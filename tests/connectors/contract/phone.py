"""The phone connector's harness: a PBX appending lines to a CDR file the connector tails.

The channel is told to forget a line by the checkpoint moving past it; a line
not acked is offered again by the tail itself (a retriable ack starts a new
reading from the checkpoint) or after a restart. A phone channel sends
nothing: every outbound envelope fails, and the "good send" case is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from itertools import count
from pathlib import Path

import pytest

from connectors.phone.client import CHECKPOINT_KEY, Position
from router.blobs import BlobStore
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from router.envelope import Envelope, envelope_id
from tests.connectors.contract.harness import Fed, Harness
from tests.connectors.phone.helpers import cdr_line, phone_config, write_lines
from tests.connectors.phone.test_inbound import from_line


class PhoneHarness(Harness):
    type = "phone"
    name = "main-line"

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "Master.csv"
        self.path.touch()
        self.checkpoints = MemoryCheckpoints()
        services = Services(blobs=BlobStore(tmp / "blobs"), checkpoints=self.checkpoints)
        cfg = phone_config(
            webhook_path=None,
            cdr={"path": self.path, "poll_interval": timedelta(milliseconds=10)},
        )
        factory = load_registry()[self.type].factory
        assert factory is not None
        self.connector = factory(self.name, cfg, services)
        self._n = count(1)

    def _append(self, line: str) -> int:
        write_lines(self.path, [line])
        return self.path.stat().st_size  # the offset after the line

    async def feed(self) -> Fed:
        uniqueid = f"1741597200.{next(self._n)}"
        end = self._append(cdr_line(uniqueid=uniqueid))
        return Fed(envelope_id(self.name, uniqueid), end)

    async def feed_bad(self) -> Fed:
        return Fed(None, self._append(cdr_line(disposition="NOT A DISPOSITION")))

    async def acked(self, fed: Fed) -> bool:
        text = await self.checkpoints.get_checkpoint(self.name, CHECKPOINT_KEY)
        position = None if text is None else Position.decode(text)
        return position is not None and position.offset >= fed.ref

    def bad_outbound(self) -> Sequence[Envelope]:
        env = from_line(cdr_line()).model_copy(update={"channel": self.name, "direction": "out"})
        return [env, env.model_copy(update={"direction": "in"})]

    def good_outbound(self) -> Envelope:
        pytest.skip("a phone channel sends nothing")

    def delivered(self) -> int:
        return 0


@asynccontextmanager
async def open_harness(request: pytest.FixtureRequest, tmp: Path) -> AsyncIterator[Harness]:
    yield PhoneHarness(tmp)
