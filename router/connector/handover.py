"""Inputs handed from request handlers to the channel runner, each awaiting its outcome.

A connector that takes input in its own handlers (an HTTP intake, the web chat's
sockets) hands each envelope over here and waits for the ack's `Outcome`;
`receive()` is what the channel runner reads. The number waiting is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from router.connector import DONE, Incoming, Outcome
from router.envelope import Envelope

NOT_YET = Outcome("not stored yet", retriable=True)


class Handover:
    def __init__(self, *, ack_timeout: float, in_flight: int) -> None:
        self._ack_timeout = ack_timeout
        self._in_flight = in_flight
        # Bounded by `in_flight`: every queued input also waits in `_waiting`.
        self._queue: asyncio.Queue[tuple[Incoming, asyncio.Future[Outcome]]] = asyncio.Queue()
        self._waiting: set[asyncio.Future[Outcome]] = set()

    async def hand_over(self, envelope: Envelope) -> Outcome | None:
        """The ack's outcome (`NOT_YET` after `ack_timeout`); None when too many wait."""
        if len(self._waiting) >= self._in_flight:
            return None
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        async def ack(outcome: Outcome = DONE) -> None:
            if not future.done():
                future.set_result(outcome)

        self._queue.put_nowait((Incoming(envelope=envelope, ack=ack), future))
        self._waiting.add(future)
        try:
            return await asyncio.wait_for(future, self._ack_timeout)
        except TimeoutError:
            return NOT_YET
        finally:
            self._waiting.discard(future)

    def release(self) -> None:
        """Answer every input still waiting `NOT_YET` (the sender offers it again)."""
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_result(NOT_YET)
        for future in list(self._waiting):
            if not future.done():
                future.set_result(NOT_YET)

    def queued(self) -> int:
        """Inputs handed over but not yet taken by `receive()`."""
        return self._queue.qsize()

    async def receive(self) -> AsyncIterator[Incoming]:
        while True:
            incoming, _ = await self._queue.get()
            yield incoming
