"""Turns to write: one writer at a time, first come first served, except that a writer
whose lateness people see (the clock's due timers) goes ahead of those already waiting.

An `asyncio.Lock` serves its waiters in arrival order too, but has no way to let one
go first: behind a backlog, the consume loop's next batch, its outbox marks and its
scan were all queued before the timer that had just come due.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    """A lock whose waiters are served in arrival order, those that ask `ahead` first."""

    def __init__(self) -> None:
        self._held = False
        self._ahead: deque[asyncio.Future[None]] = deque()
        self._behind: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, *, ahead: bool = False) -> None:
        if not self._held:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._ahead if ahead else self._behind
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the turn as the waiter gave up: pass it on
            elif turn in queue:
                queue.remove(turn)
            raise

    def release(self) -> None:
        """Hand the turn to the next waiter (still held, so nobody slips in between)."""
        for queue in (self._ahead, self._behind):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False
