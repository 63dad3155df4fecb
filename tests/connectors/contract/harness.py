"""What the contract suite asks of each connector type's harness, and the watched bus.

A harness builds its connector as the daemon does (the spec's factory, real
services, the real remote side) and knows that channel's ways: how to put one
good input and one bad input on it, how to see that the channel was told it
may forget an input, and what makes the channel offer again an input that was
not taken (IMAP: the next connection; a webhook tool: sending again after a 503).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.bus import EmbeddedBus
from router.bus.base import DEFAULT_MAX_RECORD_BYTES, Consumer
from router.connector import Connector, Incoming, Rejected
from router.envelope import Envelope

Items = AsyncIterator[Incoming | Rejected]
# Builds a type's harness for one test (real services through the request's fixtures).
OpenHarness = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager["Harness"]]


@dataclass(frozen=True)
class Fed:
    """One input put on the channel: the id its envelope gets (None for a bad input)."""

    envelope_id: str | None
    ref: Any  # the harness's own handle on it (a UID, a POST in flight, a native id)


class Harness(ABC):
    type: str
    name: str  # the channel's name
    connector: Connector
    # The bus's record limit for this channel's runner. A channel whose bad input is
    # refused only on the bus (too large for it) sets a small one.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    @abstractmethod
    async def feed(self) -> Fed:
        """Put a new good input on the channel."""

    @abstractmethod
    async def feed_bad(self) -> Fed:
        """Put on the channel an input that can never become an envelope on the bus."""

    @abstractmethod
    async def acked(self, fed: Fed) -> bool:
        """Whether the channel has been told it may forget `fed`."""

    async def refused(self, fed: Fed) -> bool | None:
        """Whether the channel was told `fed` failed for good (an HTTP intake's 4xx);
        None where the channel keeps no outcome beyond forgetting it (IMAP)."""
        return None

    async def offer_again(self, items: Items) -> Items:
        """Do what makes the channel offer again what it was not told to forget;
        the items to read next. (Default: the channel does so by itself.)"""
        return items

    @abstractmethod
    def bad_outbound(self) -> Sequence[Envelope]:
        """Outbound envelopes this channel can never send."""

    @abstractmethod
    def good_outbound(self) -> Envelope:
        """An outbound envelope this channel sends."""

    @abstractmethod
    def delivered(self) -> int:
        """How many sends the channel's far side has received."""


async def close_items(items: Items) -> None:
    """End a `receive()` still open (a generator's `aclose`; a plain iterator has none)."""
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


class WatchedBus:
    """The embedded bus, with what it made durable and a gate that holds every produce."""

    def __init__(self, inner: EmbeddedBus) -> None:
        self.inner = inner
        self.open = asyncio.Event()
        self.open.set()
        self.held = 0  # produce calls that waited at the closed gate
        self.produced: list[tuple[str, bytes, bytes]] = []

    def on(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.produced if t == topic]

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        if not self.open.is_set():
            self.held += 1
            await self.open.wait()
        await self.inner.produce(topic, key, value)
        self.produced.append((topic, key, value))  # durable: produce() returned

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def ensure_topics(self, names: Sequence[str]) -> None:
        await self.inner.ensure_topics(names)

    async def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return await self.inner.consumer(group, topics)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def backlog(self, group: str, topics: Sequence[str]) -> dict[str, int]:
        return await self.inner.backlog(group, topics)
