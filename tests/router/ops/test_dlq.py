"""`omnirouter dlq list` and `dlq replay`: a dead letter whose cause is fixed is replayed,
and processed once however often it is replayed."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from router.bus.base import Record, Topics
from router.config import load_config
from router.daemon import open_bus
from router.dlq import DeadLetter, dead_letter
from router.envelope import Envelope, Sender, encode, envelope_id
from router.errors import BusError
from router.logs import setup_logging
from router.ops import dlq
from router.routing.context import Routing
from router.store import open_store
from router.store import routing as db
from router.store.schema import messages, outbox
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running
from tests.router.ops.conftest import Cli

SHOP = """
channels:
  - name: shop
    type: webchat
    enabled: false
    webchat: {path: /shop}
"""


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def head(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A daemon config's head on each bus backend (Kafka: topics of this test's own)."""
    tmp = tmp_path
    if request.param == "embedded":
        return embedded_config(tmp)
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    run = uuid.uuid4().hex[:8]
    return f"""
version: 1
bus:
  backend: kafka
  topic_prefix: "replay{run}."
  partitions: 2
  kafka: {{bootstrap_servers: "{bootstrap}", group_id: "router-{run}"}}
store:
  url: "sqlite:///{tmp}/store.sqlite3"
blobs: {{path: "{tmp}/blobs"}}
http: {{host: 127.0.0.1, port: 0}}
"""


def visitor_message() -> Envelope:
    return Envelope(
        id=envelope_id("shop", "m1"),
        kind="message",
        direction="in",
        channel="shop",
        channel_type="webchat",
        thread_key="s1",
        sender=Sender(address="visitor-1", name="Eva"),
        received_at=datetime.now(UTC),
        text="is my order on its way?",
    )


async def stored(tmp: Path, envelope_id: str) -> int:
    store = await open_store(f"sqlite:///{tmp}/store.sqlite3")
    try:
        async with store.transaction(readonly=True) as conn:
            stmt = sa.select(sa.func.count()).where(messages.c.id == envelope_id)
            return int((await conn.execute(stmt)).scalar_one())
    finally:
        await store.close()


def listed(cli: Cli, config: Path) -> list[dict[str, Any]]:
    code, out, err = cli("dlq", "list", "-c", config, "--json")
    assert code == 0, err
    return [orjson.loads(line) for line in out.splitlines()]


async def test_a_record_dead_lettered_then_fixed_is_replayed_and_processed_once(
    tmp_path: Path, head: str, cli: Cli
) -> None:
    # The daemon's log out of the way: stdout is the command's, running beside it.
    setup_logging(level="info", fmt="console", stream=sys.stderr)
    config = tmp_path / "channels.yaml"
    config.write_text(head + "channels: []\n")
    env = visitor_message()

    def run(*args: Any) -> Any:  # the command, as operators run it, beside the daemon
        return asyncio.to_thread(cli, *args, "-c", config)

    async with running(load_config(config), config_path=config, watch_config=None) as daemon:
        assert daemon.bus is not None
        refused = daemon.metrics.dead_letters.labels(source=daemon.topics.inbound)
        await daemon.bus.produce(daemon.topics.inbound, b"shop\x1fs1", encode(env))
        await eventually(lambda: refused._value.get() == 1, 60)
        [entry] = await asyncio.to_thread(listed, cli, config)
        assert entry["reason"] == "invalid envelope: channel 'shop' is not configured"
        assert entry["source"]["topic"] == daemon.topics.inbound
        assert (entry["state"], entry["routed"], entry["key"]) == ("dead", False, "shop\x1fs1")

        # Not fixed yet: the replay says why and sends nothing.
        code, out, err = await run("dlq", "replay", entry["id"])
        assert code == 1 and "would refuse it again: channel 'shop' is not configured" in err

        config.write_text(head + SHOP)  # the cause, fixed
        assert await daemon.reload()

        code, out, err = await run("dlq", "replay", entry["id"])
        assert (code, err) == (0, ""), err
        assert f"replayed {entry['id']}" in out
        await eventually(lambda: stored(tmp_path, env.id), 60)
        # Its acknowledgement goes out: the reload made the shop channel's topic.
        bus = daemon.bus

        async def acknowledged() -> bool:
            return any([batch async for batch in bus.scan(daemon.topics.outbound("shop"))])

        await eventually(acknowledged, 60)
        assert daemon.metrics.dead_letters.labels(source="outbox")._value.get() == 0
        now = {e["id"]: e for e in await asyncio.to_thread(listed, cli, config)}
        assert list(now) == [entry["id"]]
        assert (now[entry["id"]]["state"], now[entry["id"]]["routed"]) == ("replayed", True)

        # Again: refused as done; forced, it goes, and the router applies it once.
        code, _, err = await run("dlq", "replay", entry["id"])
        assert code == 1 and "replayed already" in err
        code, _, err = await run("dlq", "replay", entry["id"], "--again")
        assert code == 0, err
        await eventually(lambda: daemon.metrics.duplicates._value.get() == 1, 60)
        assert refused._value.get() == 1  # never dead-lettered again
    assert await stored(tmp_path, env.id) == 1


def config_for(tmp: Path) -> Path:
    config = tmp / "channels.yaml"
    config.write_text(embedded_config(tmp) + SHOP)
    return config


async def _setup(config: Path, work: Callable[[Any, Any, Topics], Any]) -> Any:
    cfg = load_config(config)
    topics = Topics(prefix=cfg.bus.topic_prefix)
    bus = open_bus(cfg)
    await bus.start()
    store = await open_store(cfg.store.dsn())
    try:
        return await work(bus, store, topics)
    finally:
        await store.close()
        await bus.stop()


def test_a_dead_output_is_replayed_by_re_arming_its_row_once(tmp_path: Path, cli: Cli) -> None:
    config = config_for(tmp_path)
    now = datetime.now(UTC)

    async def dead_outputs(bus: Any, store: Any, topics: Topics) -> list[int]:
        ids = []
        async with store.transaction() as conn:
            for _ in range(2):
                row_id = await db.add_outbox(conn, "omni.outbound.gone", b"k", b"{}", now)
                await db.mark_dead(conn, row_id, "topic not created", now)
                ids.append(row_id)
        async with store.transaction(readonly=True) as conn:
            row = (await conn.execute(sa.select(outbox).where(outbox.c.id == ids[0]))).one()
        # The first one's dead letter is on the topic; the second's is gone.
        await dead_letter(bus, topics, DeadLetter.of_output(row, "topic not created"))
        return ids

    first, second = asyncio.run(_setup(config, dead_outputs))
    entries = {e["source"]["outbox_id"]: e for e in listed(cli, config)}
    assert len(entries) == 2  # the dead letter and its row are one entry
    assert entries[second]["id"] == f"outbox-{second}"
    assert {e["state"] for e in entries.values()} == {"dead"}
    assert all(e["reason"] == "topic not created" for e in entries.values())

    code, out, err = cli("dlq", "replay", "--all", "-c", config)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "2 replayed, 0 not replayed"

    async def rows(bus: Any, store: Any, topics: Topics) -> list[Any]:
        async with store.transaction(readonly=True) as conn:
            return list((await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all())

    assert [(r.sent_at, r.dead_reason) for r in asyncio.run(_setup(config, rows))] == [
        (None, None),
        (None, None),
    ]  # re-armed: the daemon's publisher sends them on its next flush
    assert {e["state"] for e in listed(cli, config)} == {"re-armed"}
    code, out, _ = cli("dlq", "replay", "--all", "-c", config)
    assert (code, out.splitlines()[-1]) == (0, "0 replayed, 0 not replayed")
    code, _, err = cli("dlq", "replay", entries[first]["id"], "-c", config, "--again")
    assert code == 1 and "not dead any more (re-armed)" in err


def test_an_original_kept_on_the_bus_is_read_back_and_an_input_is_not_replayable(
    tmp_path: Path, cli: Cli
) -> None:
    config = config_for(tmp_path)
    value = encode(visitor_message())

    async def letters(bus: Any, store: Any, topics: Topics) -> None:
        await bus.produce(topics.inbound, b"shop\x1fs1", value)
        [[original]] = [batch async for batch in bus.scan(topics.inbound)]
        # Too large to ride in its dead letter: only where it stays.
        letter = DeadLetter.of_record(original, "store was down for good")
        await bus.produce(topics.dlq, letter.key, orjson.dumps(letter.body(inline=False)))
        given = DeadLetter.of_input("shop", "cannot parse", native_id="n1", original=b"\xff")
        await dead_letter(bus, topics, given)

    asyncio.run(_setup(config, letters))
    by_kind = {e["kind"]: e for e in listed(cli, config)}
    assert by_kind["record"]["value_ref"].startswith("omni.inbound/")
    assert by_kind["input"]["source"] == {"channel": "shop"}

    code, out, err = cli("dlq", "replay", "--all", "-c", config)  # inputs are left out
    assert (code, out.splitlines()[-1]) == (0, "1 replayed, 0 not replayed"), err
    code, _, err = cli("dlq", "replay", by_kind["input"]["id"], "-c", config)
    assert code == 1 and "the channel must take it in again" in err

    async def inbound(bus: Any, store: Any, topics: Topics) -> list[Any]:
        return [r async for batch in bus.scan(topics.inbound) for r in batch]

    first, again = asyncio.run(_setup(config, inbound))
    assert (again.key, again.value) == (first.key, first.value) == (b"shop\x1fs1", value)


def test_unknown_ids_are_exit_2_and_the_table_names_every_column(tmp_path: Path, cli: Cli) -> None:
    config = config_for(tmp_path)

    async def one(bus: Any, store: Any, topics: Topics) -> None:
        await dead_letter(bus, topics, DeadLetter.of_input("shop", "cannot parse", native_id="n"))

    asyncio.run(_setup(config, one))
    code, out, err = cli("dlq", "list", "-c", config)
    assert (code, err) == (0, "")
    header, _, row = out.splitlines()[:3]
    assert header.split() == [
        "ID", "┃", "WHEN", "(UTC)", "┃", "SOURCE", "┃", "KEY", "┃", "SIZE", "┃", "STATE",
        "┃", "REASON",
    ]  # fmt: skip
    assert "channel shop" in row and "shop/n" in row and "cannot parse" in row
    code, _, err = cli("dlq", "replay", "9-99", "-c", config)
    assert code == 2 and "no dead letter 9-99" in err


class DownBus:
    """The bus, refusing every record (it is down): scans still work."""

    def __init__(self, bus: Any) -> None:
        self._bus = bus

    def scan(self, *args: Any) -> Any:
        return self._bus.scan(*args)

    async def produce(self, *_args: Any) -> None:
        raise BusError("the bus is down", retriable=True)


def test_a_replay_the_bus_does_not_take_is_not_noted(tmp_path: Path) -> None:
    config = config_for(tmp_path)

    async def attempt(bus: Any, store: Any, topics: Topics) -> tuple[Any, Any]:
        record = Record(topics.inbound, 0, 0, b"shop\x1fs1", encode(visitor_message()))
        await dead_letter(bus, topics, DeadLetter.of_record(record, "store was down for good"))
        ctx = Routing(load_config(config), store, topics)
        [entry] = await dlq.entries(bus, topics, store)
        with pytest.raises(BusError):
            await dlq.replay(ctx, DownBus(bus), [entry])
        [after] = await dlq.entries(bus, topics, store)
        result = await dlq.replay(ctx, bus, [after])  # the bus is back
        return after, result

    after, result = asyncio.run(_setup(config, attempt))
    assert (after.state, after.replayed_at) == ("dead", None)
    assert (result.done, result.skipped) == ([after.id], [])
