"""The one retry/backoff helper: capped exponential backoff with full jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import structlog

from router.errors import OmniError

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Delays for successive attempts: base * 2**n, capped, with full jitter."""

    base: float = 0.2
    cap: float = 30.0
    attempts: int | None = None  # None: retry for as long as the error is retriable

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        r = rng or random.Random()
        n = 0
        while self.attempts is None or n < self.attempts - 1:
            yield r.uniform(0, min(self.cap, self.base * (2**n)))
            n += 1


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff = Backoff(),
    what: str = "operation",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `op` until it succeeds; retry only errors marked `retriable`."""
    delays = backoff.delays()
    while True:
        try:
            return await op()
        except OmniError as exc:
            if not exc.retriable:
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            log.warning("retrying", what=what, error=str(exc), delay=round(delay, 3))
            await sleep(delay)
