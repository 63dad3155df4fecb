"""`Store.work`: a whole unit of work in the store's writer thread, on both backends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from router.errors import StoreError
from router.store import Store, open_store
from router.store.conn import Conn, SuspendedError
from router.store.schema import checkpoints, utcnow
from tests.harness.common import eventually


async def put(conn: Conn, key: str, value: str) -> None:
    await conn.execute(
        checkpoints.insert().values(connector="t", key=key, value=value, updated_at=utcnow())
    )


async def stored(store: Store, key: str) -> str | None:
    return await store.get_checkpoint("t", key)


async def test_a_unit_commits_and_returns_its_value(store: Store) -> None:
    async def unit(conn: Conn) -> int:
        await put(conn, "a", "1")
        await put(conn, "b", "2")
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(checkpoints)))

    assert await store.work(unit) == 2
    assert (await stored(store, "a"), await stored(store, "b")) == ("1", "2")


async def test_a_unit_that_raises_leaves_nothing_and_its_error_passes_through(
    store: Store,
) -> None:
    class Refused(Exception):
        pass

    async def unit(conn: Conn) -> None:
        await put(conn, "a", "1")
        raise Refused("no")

    with pytest.raises(Refused):
        await store.work(unit)
    assert await stored(store, "a") is None


async def test_a_database_error_is_a_store_error_and_rolls_back(store: Store) -> None:
    async def unit(conn: Conn) -> None:
        await put(conn, "a", "1")
        await put(conn, "a", "again")  # the primary key, twice

    with pytest.raises(StoreError) as caught:
        await store.work(unit)
    assert caught.value.retriable is False
    assert "INSERT" not in str(caught.value)  # no statement (or its data) in the message
    assert await stored(store, "a") is None


async def test_a_unit_that_waits_on_something_else_is_stopped_before_it_commits(
    store: Store,
) -> None:
    async def unit(conn: Conn) -> None:
        await put(conn, "a", "1")
        await asyncio.sleep(0)  # not the store: would need the event loop

    with pytest.raises(SuspendedError):
        await store.work(unit)
    assert await stored(store, "a") is None


async def test_the_unit_runs_off_the_event_loop_which_stays_free(store: Store) -> None:
    loop_ran = threading.Event()
    seen: list[str] = []

    async def unit(conn: Conn) -> bool:
        seen.append(threading.current_thread().name)
        await put(conn, "a", "1")
        # Waits for the event loop to run something: on the loop's own thread, this could
        # never happen (the wait would time out).
        return loop_ran.wait(5)

    job = asyncio.create_task(store.work(unit))
    await eventually(lambda: bool(seen), 5)
    loop_ran.set()
    assert await asyncio.wait_for(job, 10) is True
    assert seen[0].startswith("omnirouter-store")
    assert seen[0] != threading.current_thread().name


async def test_a_unit_waits_for_its_turn_behind_a_writing_transaction(tmp_path: Path) -> None:
    # Turns are SQLite's: PostgreSQL writers do not share one lock.
    async with await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}") as store:
        await waits_its_turn(store)


async def waits_its_turn(store: Store) -> None:
    order: list[str] = []
    hold = asyncio.Event()

    async def holder() -> None:
        async with store.transaction() as conn:
            order.append("transaction")
            await conn.execute(sa.text("SELECT 1"))
            await hold.wait()

    async def unit(conn: Conn) -> None:
        order.append("unit")
        await put(conn, "u", "1")

    first = asyncio.create_task(holder())
    await eventually(lambda: order == ["transaction"], 5)
    second = asyncio.create_task(store.work(unit))
    await eventually(lambda: store.writers_waiting == 1, 5)  # queued on the loop, not the lock
    assert order == ["transaction"]
    hold.set()
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert order == ["transaction", "unit"]
    assert await stored(store, "u") == "1"


async def test_a_closed_store_refuses_work(store: Store) -> None:
    async def unit(conn: Conn) -> None:
        await put(conn, "a", "1")

    await store.work(unit)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.work(unit)


async def test_a_unit_that_is_not_urgent_does_not_cut_a_batch_short(tmp_path: Path) -> None:
    async with await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}") as store:
        await not_urgent(store)


async def not_urgent(store: Store) -> None:
    hold = asyncio.Event()

    async def holder() -> None:
        async with store.transaction() as conn:
            await conn.execute(sa.text("SELECT 1"))
            await hold.wait()

    async def unit(conn: Conn) -> None:
        await put(conn, "later", "1")

    first = asyncio.create_task(holder())
    await eventually(lambda: store.writers_waiting == 0, 5)
    later = asyncio.create_task(store.work(unit, urgent=False))
    urgent = asyncio.create_task(store.work(lambda conn: put(conn, "now", "1")))
    await eventually(lambda: store.writers_waiting == 1, 5)  # the urgent one only
    hold.set()
    await asyncio.wait_for(asyncio.gather(first, later, urgent), 10)
    assert (await stored(store, "later"), await stored(store, "now")) == ("1", "1")
