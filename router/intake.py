"""Inputs in flight between a connector's intake and the bus.

Putting inputs on the bus one at a time caps a channel at one durable write
per input (measured with bench/chat.py on the embedded bus: about 400-650/s,
so a web chat offered 1,000 messages/s fell seconds behind). `Flight` keeps
up to `limit` inputs in flight at once, so their writes share a commit (the
embedded bus group-commits concurrent produces; Kafka batches them), while:

- inputs of one key (a conversation) reach the bus in the order taken: each
  waits for the one before it, and goes only if that one is on the bus or
  dead-lettered (otherwise it is acked retriable and offered again behind it);
- acks are called one at a time, in the order the inputs were taken, whatever
  order their writes end in: a channel that keeps a position (IMAP's last UID,
  a CDR file's offset) never sees a later input done before an earlier one;
- a failure that must restart the intake (`fail`, or a step that raises)
  stops the taking; what is in flight still finishes and is acked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from router.connector import Ack, Outcome

T = TypeVar("T")

# Inputs a channel keeps in flight unless its config says otherwise (`max_in_flight`).
# With 100, bench/chat.py's web chat on the embedded bus answered 2,000 messages/s
# (p50 60 ms, p99 0.4 s; one at a time it fell 9-14 s behind). A crash repeats at most
# this many inputs (same ids: the router drops them).
MAX_IN_FLIGHT = 100

BEHIND = "an earlier input of its conversation is not on the bus yet"
RESTARTING = "the intake is restarting"

# Puts one input on the bus and says with what outcome. One that raises stops the
# intake, and its input is acked retriable: the channel offers it again (a channel that
# keeps a position must not move past it because the inputs after it are done).
Step = Callable[[], Awaitable[Outcome]]
# What `run` does with an item: its key (None: no order to keep), its step (None: ack
# it retriable, untried) and its ack.
Planned = tuple[Hashable | None, Step | None, Ack]


@dataclass(eq=False, slots=True)
class _Input:
    ack: Ack
    key: Hashable | None
    after: _Input | None  # the input of the same key taken just before, if in flight
    outcome: Outcome | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def on_bus(self) -> bool:
        """On the bus, or dead-lettered: either way the next of its key may go."""
        outcome = self.outcome
        return outcome is not None and (outcome.done or not outcome.retriable)


class Flight:
    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.failure: BaseException | None = None
        self._inputs: deque[_Input] = deque()  # taken, not yet acked, in take order
        self._last: dict[Hashable, _Input] = {}  # per key, the latest taken still in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._acking = asyncio.Lock()
        self._room = asyncio.Event()
        self._taker: asyncio.Task[None] | None = None  # reads the intake, in `run`

    def fail(self, exc: BaseException) -> None:
        """Stop taking inputs now; `run` raises `exc` (the first failure counts)."""
        if self.failure is None:
            self.failure = exc
        if self._taker is not None:
            # At once, not at the taker's next turn: an input the channel gives back in
            # this ack must not be taken again before the intake restarts.
            self._taker.cancel()

    async def run(self, items: AsyncIterator[T], plan: Callable[[T], Planned]) -> None:
        """Take the intake's items until it ends (returns) or raises, or an input fails
        (raises that failure), each time once what was taken is settled and acked.

        The intake is read by a task of its own, cancelled by a failure even while it
        waits for input. Cancelled itself, `run` stops at once (see `cancel`)."""
        taker = self._taker = asyncio.create_task(self._take_all(items, plan))
        try:
            await asyncio.wait({taker})
            await self.settle()
        except asyncio.CancelledError:
            taker.cancel()
            await asyncio.gather(taker, return_exceptions=True)
            await self.cancel()
            raise
        finally:
            self._taker = None
        if self.failure is not None:
            raise self.failure
        if not taker.cancelled() and (error := taker.exception()) is not None:
            raise error

    async def _take_all(self, items: AsyncIterator[T], plan: Callable[[T], Planned]) -> None:
        async for item in items:
            key, step, ack = plan(item)
            try:
                while len(self._inputs) >= self.limit:
                    self._room.clear()
                    await self._room.wait()
            except asyncio.CancelledError:
                self.put(key, None, ack)  # taken, not tried: the channel offers it again
                raise
            self.put(key, step, ack)

    def put(self, key: Hashable | None, step: Step | None, ack: Ack) -> None:
        """Take an input: `step` puts it on the bus (None: ack it retriable, untried)."""
        after = self._last.get(key) if key is not None else None
        entry = _Input(ack=ack, key=key, after=after)
        self._inputs.append(entry)
        if key is not None:
            self._last[key] = entry
        task = asyncio.create_task(self._run(entry, step))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, entry: _Input, step: Step | None) -> None:
        try:
            entry.outcome = await self._outcome(entry, step)
        except Exception as exc:
            self.fail(exc)
            entry.outcome = Outcome(f"not put on the bus: {_describe(exc)}", retriable=True)
        finally:
            entry.settled.set()
            if entry.key is not None and self._last.get(entry.key) is entry:
                del self._last[entry.key]
        await self._ack_done()

    @staticmethod
    async def _outcome(entry: _Input, step: Step | None) -> Outcome:
        before = entry.after
        entry.after = None  # the chain is kept only while needed
        if before is not None:
            await before.settled.wait()
            if not before.on_bus:
                return Outcome(BEHIND, retriable=True)
        if step is None:
            return Outcome(RESTARTING, retriable=True)
        return await step()

    async def _ack_done(self) -> None:
        """Ack the settled inputs at the head of the flight, one at a time, in order."""
        async with self._acking:
            while self._inputs and self._inputs[0].settled.is_set():
                entry = self._inputs.popleft()
                self._room.set()
                assert entry.outcome is not None  # settled
                try:
                    await entry.ack(entry.outcome)
                except Exception as exc:  # the channel's own store: restart the intake
                    self.fail(exc)

    async def settle(self) -> None:
        """Wait until every input taken is settled and acked."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Stop at once (the intake is being stopped): inputs not acked yet stay unacked,
        and the channel offers them again."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inputs.clear()
        self._last.clear()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
