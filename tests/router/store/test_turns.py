"""SQLite writers of one process take turns on the write lock in arrival order, the
clock's due timers ahead of the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from router.errors import StoreError
from router.store import Store, open_store
from router.store.conn import Conn
from router.store.turns import Turns
from tests.harness.common import eventually


async def write(
    store: Store, name: str, order: list[str], hold: asyncio.Event | None = None
) -> None:
    async with store.transaction() as conn:
        order.append(name)
        await conn.execute(sa.text("SELECT 1"))
        if hold is not None:
            await hold.wait()


async def holding(
    store: Store, name: str, order: list[str]
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A writer that holds its turn until released (a batch in hand)."""
    release = asyncio.Event()
    holder = asyncio.create_task(write(store, name, order, release))
    await eventually(lambda: order == [name], 2)
    return holder, release


async def test_a_waiting_writer_goes_before_the_holder_asks_again(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        order: list[str] = []
        holder, release = await holding(store, "batch 1", order)
        clock = asyncio.create_task(write(store, "clock", order))
        await eventually(lambda: store.writers_waiting == 1, 2)

        async def again() -> None:  # the consume loop: its next batch at once
            await holder
            await write(store, "batch 2", order)

        batch = asyncio.create_task(again())
        release.set()
        await asyncio.wait_for(asyncio.gather(clock, batch), 5)
        assert order == ["batch 1", "clock", "batch 2"]
        assert store.writers_waiting == 0
    finally:
        await store.close()


async def test_a_turn_waited_for_too_long_is_a_retriable_error(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}", lock_timeout=0.2)
    try:
        order: list[str] = []
        holder, release = await holding(store, "holder", order)
        with pytest.raises(StoreError, match="for a turn to write") as raised:
            await write(store, "late", order)
        assert raised.value.retriable
        assert store.writers_waiting == 0
        async with store.transaction(readonly=True) as conn:  # readers never wait
            assert await conn.scalar(sa.text("SELECT 1")) == 1
        release.set()
        await holder
        await write(store, "after", order)
        assert order == ["holder", "after"]
    finally:
        await store.close()


async def test_the_clock_goes_ahead_of_the_writers_already_waiting(tmp_path: Path) -> None:
    """Behind a backlog the consume loop's next batch and its outbox marks are already
    queued when a timer comes due: the timer's unit (`ahead`) takes the next turn."""
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        order: list[str] = []
        holder, release = await holding(store, "batch 1", order)

        def unit(name: str) -> Callable[[Conn], Coroutine[Any, Any, None]]:
            async def run(conn: Conn) -> None:
                order.append(name)
                await conn.execute(sa.text("SELECT 1"))

            return run

        batch = asyncio.create_task(store.work(unit("batch 2")))
        marks = asyncio.create_task(store.work(unit("marks"), urgent=False))
        await eventually(lambda: store.writers_waiting == 1, 2)  # marks are not counted
        clock = asyncio.create_task(store.work(unit("clock"), ahead=True))
        await eventually(lambda: store.writers_waiting == 2, 2)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, batch, marks, clock), 5)
        assert order == ["batch 1", "clock", "batch 2", "marks"]
    finally:
        await store.close()


async def test_a_waiter_that_gives_up_leaves_the_turns_in_order() -> None:
    turns = Turns()
    await turns.acquire()
    order: list[str] = []

    async def take(name: str, *, ahead: bool = False) -> None:
        await turns.acquire(ahead=ahead)
        order.append(name)
        turns.release()

    first = asyncio.create_task(take("first"))
    quitter = asyncio.create_task(take("quitter", ahead=True))
    last = asyncio.create_task(take("last"))
    await asyncio.sleep(0)  # all three are queued
    quitter.cancel()
    turns.release()
    await asyncio.wait_for(asyncio.gather(first, last), 2)
    assert quitter.cancelled()
    assert order == ["first", "last"]
    assert not turns.locked()


async def test_a_turn_handed_to_a_waiter_that_gave_up_passes_on() -> None:
    turns = Turns()
    await turns.acquire()
    late = asyncio.create_task(turns.acquire())
    after = asyncio.create_task(turns.acquire())
    await asyncio.sleep(0)
    turns.release()  # handed to `late`...
    late.cancel()  # ...which gives up before it runs again
    await asyncio.wait_for(after, 2)  # so `after` has it
    assert late.cancelled() and turns.locked()
    turns.release()
    assert not turns.locked()
