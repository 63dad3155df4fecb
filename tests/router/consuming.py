"""Helpers for tests of the consume loop and what runs in it, on the embedded bus."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from router.bus import EmbeddedBus
from router.bus.base import Record, Topics
from router.consume import ConsumeLoop
from router.metrics import Metrics
from router.retry import Backoff

TOPICS = Topics(prefix="t.")


async def drain(bus: EmbeddedBus, topic: str, group: str, want: int) -> list[Record]:
    consumer = await bus.consumer(group, [topic])
    got: list[Record] = []
    try:
        for _ in range(20):
            got += await consumer.fetch(timeout=0.2)
            if len(got) >= want:
                break
    finally:
        await consumer.close()
    return got


async def uncommitted(bus: EmbeddedBus, topic: str, group: str) -> int:
    """Records on `topic` beyond `group`'s commits (for a group that never committed:
    all of them). Asks the bus instead of waiting for a fetch that finds nothing."""
    consumer = await bus.consumer(group, [topic])
    try:
        return sum((await consumer.lag()).values())
    finally:
        await consumer.close()


@contextlib.asynccontextmanager
async def running(loop: ConsumeLoop, *held: asyncio.Event) -> AsyncIterator[None]:
    """Run `loop` while the block runs; then set `held` (what the test holds the loop's
    steps on, so none waits forever) and stop it. What the loop raised comes out."""
    task = asyncio.create_task(loop.run())
    try:
        yield
    finally:
        for event in held:
            event.set()
        loop.stop()
        await asyncio.wait_for(task, 10)


async def run_until(loop: ConsumeLoop, done: asyncio.Event) -> None:
    """Run `loop` until `done` is set, then stop it; what the loop raised comes out."""
    task = asyncio.create_task(loop.run())
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait([task, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert done.is_set(), "not done in time"


def make_loop(
    bus: EmbeddedBus,
    handler,
    group: str = "g",
    after_batch=None,
    handle_batch=None,
    metrics: Metrics | None = None,
    commit_step: int | None = None,
) -> ConsumeLoop:
    return ConsumeLoop(
        bus=bus,
        topics=TOPICS,
        group=group,
        subscribe=[TOPICS.inbound],
        handler=handler,
        metrics=metrics or Metrics(),
        backoff=Backoff(base=0.01, cap=0.02),
        after_batch=after_batch,
        handle_batch=handle_batch,
        commit_step=commit_step,
    )


async def kill(task: asyncio.Task[None]) -> None:
    """End a running loop the way a crash does: no stop, no last commit."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
