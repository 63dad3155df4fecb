"""The clock loop gets its turn while the consume loop works through a backlog: an SLA
timer reaches the inbound topic within a second of its due time, not after the backlog."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from router.config import parse_config
from router.connector import load_registry
from router.connector.testing import MEMORY_TYPE, memory_spec
from router.envelope import Envelope, Sender, decode, encode, envelope_id
from router.store import open_store
from router.store.schema import outbox, processed, timers
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running

# Customer messages produced at a time, while the router works through them: enough to
# stay ahead of any router, few enough that the embedded bus's group commit (which the
# timer's record joins behind them) does not itself take most of the second.
CHUNK = 250
MOST = 60_000  # produced at most
TARGET = 6  # seconds of the web channel's first-response SLA (its warning is due at 80%)
LATE = 1.0  # seconds a timer may reach the inbound topic after its due time


def config(tmp: Path) -> str:
    return embedded_config(tmp) + (
        f"""
channels:
  - name: chat
    type: memory
  - name: web
    type: webchat
    enabled: false
    webchat: {{path: /chat}}
sla:
  warning_template: null
  follow_up_after: null
  first_response:
    memory: {{normal: 1h}}
    webchat: {{normal: {TARGET}s}}
"""
    )


def message(channel: str, channel_type: str, n: int) -> Envelope:
    return Envelope(
        id=envelope_id(channel, f"m{n}"),
        kind="message",
        direction="in",
        channel=channel,
        channel_type=channel_type,
        thread_key=f"t{n % 500}",  # new conversations and follow-ups, as a busy day has
        sender=Sender(address=f"visitor-{n % 500}", name=f"Visitor {n % 500}"),
        received_at=datetime.now(UTC),
        text=f"Hello, this is message {n} about my order {n % 500}. Please help me.",
    )


async def test_sla_timer_fires_on_time_during_a_backlog(tmp_path: Path) -> None:
    registry = {**load_registry(), MEMORY_TYPE: memory_spec()}
    cfg = parse_config(config(tmp_path), registry=registry)
    async with running(cfg, registry=registry, watch_config=None) as daemon:
        assert daemon.bus is not None and daemon.store is not None
        bus, inbound = daemon.bus, daemon.topics.inbound
        web = message("web", "webchat", 0)
        await bus.produce(inbound, web.bus_key(), encode(web))
        store = await open_store(cfg.store.dsn(), migrate=False)
        try:
            seen: dict[str, datetime] = {}

            async def stored(key: str, stmt: sa.Select[tuple[datetime]]) -> bool:
                async with store.transaction(readonly=True) as conn:
                    value = await conn.scalar(stmt)
                if value is not None:
                    seen[key] = value
                return value is not None

            warning = sa.select(timers.c.due_at).where(timers.c.kind == "sla_warning")
            await eventually(lambda: stored("due", warning), 10)
            due = seen["due"]
            assert due - datetime.now(UTC) > timedelta(seconds=2), "the backlog comes first"
            produced: list[tuple[datetime, int]] = []  # (when, how many by then)

            async def keep_a_backlog() -> None:
                # However fast the router is, the inbound topic is never empty until the
                # warning goes out: a backlog, whatever the machine.
                for start in range(1, MOST, CHUNK):
                    chunk = [message("chat", MEMORY_TYPE, n) for n in range(start, start + CHUNK)]
                    await asyncio.gather(
                        *(bus.produce(inbound, e.bus_key(), encode(e)) for e in chunk)
                    )
                    produced.append((datetime.now(UTC), start + CHUNK - 1))
                    if "sent" in seen:
                        return

            producer = asyncio.create_task(keep_a_backlog())

            async def warning_sent() -> bool:
                stmt = sa.select(outbox.c.value, outbox.c.sent_at).where(
                    outbox.c.topic == inbound, outbox.c.sent_at.is_not(None)
                )
                async with store.transaction(readonly=True) as conn:
                    rows = (await conn.execute(stmt)).all()
                for row in rows:  # timer records: the warning's, and others that came due
                    if decode(row.value).meta.get("timer") == "sla_warning":
                        seen["sent"] = row.sent_at
                return "sent" in seen

            try:
                await eventually(warning_sent, TARGET + 30, every=0.1)
            finally:
                await producer
            sent = seen["sent"]
            # Measured by the daemon's own clock (the rows it wrote), not by this poll.
            count = sa.select(sa.func.count()).where(processed.c.processed_at <= sent)
            async with store.transaction(readonly=True) as conn:
                done_by_then = int(await conn.scalar(count) or 0)
        finally:
            await store.close()
    there = max((n for when, n in produced if when <= sent), default=0)
    assert done_by_then < there, "the backlog was drained before the timer fired: no proof"
    late = (sent - due).total_seconds()
    assert 0 <= late <= LATE, f"the SLA warning reached the inbound topic {late:.2f}s after due"
