"""A channel's outbound loop after a crash: it sends again a few records, not a fetch."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from router.bus import EmbeddedBus
from router.bus.base import Topics
from router.channels import OUTBOUND_COMMIT_STEP, ChannelRunner
from router.connector import Incoming, SendResult
from router.envelope import Envelope, encode
from router.metrics import Metrics
from tests.harness.common import eventually
from tests.router.consuming import kill
from tests.router.test_daemon import message

TOPICS = Topics(prefix="omni.")


class Tool:
    """An agent's tool that takes every delivery, until it hangs at delivery `hang_at`."""

    def __init__(self, hang_at: int | None = None) -> None:
        self.sent: list[str] = []
        self.hang_at = hang_at
        self.hanging = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def receive(self) -> AsyncIterator[Incoming]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # never: the tool sends nothing in

    async def send(self, envelope: Envelope) -> SendResult:
        if len(self.sent) == self.hang_at:
            self.hanging.set()
            await asyncio.Event().wait()  # the crash comes while this POST is in hand
        self.sent.append(envelope.id)
        return SendResult(status="sent")


def runner(bus: EmbeddedBus, tool: Tool) -> ChannelRunner:
    return ChannelRunner(
        name="hooks", connector=tool, bus=bus, topics=TOPICS, metrics=Metrics(), serves_agents=True
    )


async def test_a_crash_repeats_at_most_a_commit_step_of_deliveries(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=1)
    await bus.start()
    try:
        deliveries = [
            message("hooks", f"d{i}").model_copy(update={"direction": "out"}) for i in range(150)
        ]
        for env in deliveries:
            await bus.produce(TOPICS.agent("hooks"), env.bus_key(), encode(env))
        first = Tool(hang_at=100)  # one fetch: the old loop committed none of the 100
        task = asyncio.create_task(runner(bus, first).outbound.run())
        await asyncio.wait_for(first.hanging.wait(), 20)
        await kill(task)

        second = Tool()
        restarted = runner(bus, second)
        task = asyncio.create_task(restarted.outbound.run())
        try:
            await eventually(lambda: len(set(first.sent + second.sent)) == 150, 20)
        finally:
            restarted.outbound.stop()
            await asyncio.wait_for(task, 10)
        times = Counter(first.sent + second.sent)
        repeated = sum(n - 1 for n in times.values())
        assert repeated <= 2 * OUTBOUND_COMMIT_STEP
        assert max(times.values()) <= 2
        assert second.sent[-1] == deliveries[-1].id
    finally:
        await bus.stop()
