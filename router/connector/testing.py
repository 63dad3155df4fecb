"""In-memory stand-ins for tests: a connector that honours the contract, and checkpoints.

Shipped with the package so that the daemon's tests, each connector's tests
and the contract suite (tests/connectors/contract/) share one of each.

`MemoryConnector` is a channel held in memory that behaves as the contract
asks of a real one:

- `offer(envelope)` puts an input on the channel; `offer_raw(data)` puts bytes
  that `receive()` decodes as an envelope, or yields as `Rejected` with the
  reason when they are not one;
- an input yielded stays the channel's until acked: acked done, or with a
  non-retriable error (it was dead-lettered), it is forgotten; acked with a
  retriable error it is offered again, behind what is waiting; still unacked
  when the connector stops, it is offered again after the next start (as an
  IMAP message above the checkpoint is), unless its late ack says to forget it;
- `send()` records every envelope in `sent` and answers `failed` for one it
  could never send: not outbound, for another channel, or any envelope when
  the channel is configured with `fail_sends`.

And it fails as a real one does, for the reconnect tests: after
`fail_starts(exc)` its starts raise `exc` (every one, as a wrong password
would, or the next few, as a passing outage would; `refuse_start` in its
block does it from the first start); `break_intake(exc)` makes the running
`receive()` raise `exc`, as a dropped connection would (what the channel
holds stays). Lent the daemon's HTTP listener, it serves
`GET /memory/<name>/ping`, as a connector's own endpoint (a webhook) is served.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from router.connector import (
    DONE,
    Ack,
    ConnectorSpec,
    Incoming,
    Outcome,
    Rejected,
    SendResult,
    Services,
)
from router.envelope import Envelope, decode
from router.errors import ConnectorError, EnvelopeError

MEMORY_TYPE = "memory"


class MemoryCheckpoints:
    """The checkpoint store's contract, in memory (the real store has its own tests)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.written: dict[tuple[str, str], datetime] = {}

    async def get_checkpoint(self, name: str, key: str) -> str | None:
        return self.values.get((name, key))

    async def set_checkpoint(self, name: str, key: str, value: str) -> None:
        self.values[(name, key)] = value
        self.written[(name, key)] = datetime.now(UTC)

    async def prune_checkpoints(self, name: str, prefix: str, before: datetime) -> int:
        old = [
            k
            for k, at in self.written.items()
            if k[0] == name and k[1].startswith(prefix) and at < before
        ]
        for k in old:
            del self.values[k], self.written[k]
        return len(old)


class MemoryChannelConfig(BaseModel):
    """The `memory:` block of a test channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fail_sends: bool = False  # every send answers `failed` (a tool that refuses everything)
    # Every start raises a non-retriable ConnectorError with this reason (a wrong password).
    refuse_start: str | None = None


@dataclass(frozen=True, slots=True)
class _Input:
    seq: int  # tells two offers of one native id apart
    native_id: str
    item: Envelope | bytes


class MemoryConnector:
    """A channel in memory; see the module docstring for what it promises."""

    def __init__(
        self,
        name: str,
        settings: MemoryChannelConfig | None = None,
        services: Services | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or MemoryChannelConfig()
        self.services = services
        self.running = False
        self.starts = 0
        self.stops = 0
        self.sent: list[Envelope] = []
        self.acks: list[tuple[str, Outcome]] = []  # (native id, outcome), in order
        self._waiting: deque[_Input] = deque()
        self._in_flight: dict[int, _Input] = {}  # by delivery: one input may be yielded again
        self._arrived = asyncio.Event()
        self._seq = itertools.count()
        self._deliveries = itertools.count()
        self._breaks: deque[Exception] = deque()
        self._start_error: Exception | None = None
        self._start_failures: int | None = None  # how many more starts fail (None: all)
        if self.settings.refuse_start is not None:
            self.fail_starts(ConnectorError(self.settings.refuse_start, retriable=False))
        if services is not None and services.http is not None:
            services.http.add("GET", f"/{MEMORY_TYPE}/{name}/ping", self._ping)

    # --- the channel's side ------------------------------------------------------------

    def offer(self, envelope: Envelope) -> str:
        """Put `envelope` on the channel; its native id (the envelope id)."""
        return self._put(envelope, envelope.id)

    def offer_raw(self, data: bytes, native_id: str | None = None) -> str:
        """Put raw bytes on the channel (an encoded envelope, or garbage); their native id."""
        return self._put(data, native_id)

    def _put(self, item: Envelope | bytes, native_id: str | None) -> str:
        seq = next(self._seq)
        taken = _Input(seq, native_id or f"raw-{seq}", item)
        self._waiting.append(taken)
        self._arrived.set()
        return taken.native_id

    def fail_starts(self, error: Exception | None, times: int | None = None) -> None:
        """The next `times` starts (None: every one) raise `error`; None: none does."""
        self._start_error, self._start_failures = error, times

    def break_intake(self, error: Exception) -> None:
        """The running (or next) `receive()` raises `error`; inputs stay on the channel."""
        self._breaks.append(error)
        self._arrived.set()

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.Response(text=f"pong from {self.name}")

    @property
    def pending(self) -> list[str]:
        """Native ids the channel still holds: waiting, or yielded and not yet acked."""
        return [i.native_id for i in (*self._in_flight.values(), *self._waiting)]

    def outcome(self, native_id: str) -> Outcome | None:
        """The last outcome `native_id` was acked with (None: never acked)."""
        found = [o for n, o in self.acks if n == native_id]
        return found[-1] if found else None

    # --- the contract ---------------------------------------------------------------------

    async def start(self) -> None:
        self.starts += 1
        error = self._start_error
        if error is not None and self._start_failures != 0:
            if self._start_failures is not None:
                self._start_failures -= 1
            raise error
        self.running = True

    async def stop(self) -> None:
        if self.running:
            self.stops += 1
        self.running = False
        # Yielded but never acked: the channel still has them, and offers them first.
        self._waiting.extendleft(reversed(list(self._in_flight.values())))
        self._in_flight.clear()
        if self._waiting:
            self._arrived.set()

    async def receive(self) -> AsyncIterator[Incoming | Rejected]:
        while True:
            while not self._waiting and not self._breaks:
                self._arrived.clear()
                await self._arrived.wait()
            if self._breaks:
                raise self._breaks.popleft()
            taken = self._waiting.popleft()
            delivery = next(self._deliveries)
            self._in_flight[delivery] = taken
            yield self._present(taken, delivery)

    def _present(self, taken: _Input, delivery: int) -> Incoming | Rejected:
        ack = self._acker(taken, delivery)
        item = taken.item
        if isinstance(item, Envelope):
            return Incoming(envelope=item, ack=ack)
        try:
            return Incoming(envelope=decode(item), ack=ack)
        except EnvelopeError as exc:
            return Rejected(reason=str(exc), ack=ack, native_id=taken.native_id)

    def _acker(self, taken: _Input, delivery: int) -> Ack:
        acked = False

        async def ack(outcome: Outcome = DONE) -> None:
            nonlocal acked
            if acked:  # the contract says once; a second ack hides a bug in the caller
                raise RuntimeError(f"{taken.native_id} acked twice")
            acked = True
            self.acks.append((taken.native_id, outcome))
            if not outcome.retriable:  # forgotten, wherever stop() may have put it back
                self._in_flight = {d: i for d, i in self._in_flight.items() if i.seq != taken.seq}
                self._waiting = deque(i for i in self._waiting if i.seq != taken.seq)
            elif self._in_flight.pop(delivery, None) is not None:
                self._waiting.append(taken)  # (one given back by stop() is waiting already)
                self._arrived.set()

        return ack

    async def send(self, envelope: Envelope) -> SendResult:
        self.sent.append(envelope)
        if self.settings.fail_sends:
            return SendResult(status="failed", detail="the channel refuses every send")
        if envelope.direction != "out":
            return SendResult(status="failed", detail="not an outbound envelope")
        if envelope.channel != self.name:
            return SendResult(
                status="failed", detail=f"envelope is for channel {envelope.channel!r}"
            )
        return SendResult(status="sent", native_id=f"{self.name}-{len(self.sent)}")


def memory_spec(built: dict[str, MemoryConnector] | None = None) -> ConnectorSpec:
    """A spec for `type: memory`; each connector it builds is kept in `built` by name."""

    def build(name: str, settings: MemoryChannelConfig, services: Services) -> MemoryConnector:
        connector = MemoryConnector(name, settings, services)
        if built is not None:
            built[name] = connector
        return connector

    return ConnectorSpec(
        type=MEMORY_TYPE,
        description="A channel held in memory, for tests.",
        config=MemoryChannelConfig,
        factory=build,
    )
