"""SQLite writers of one process take turns on the write lock in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from router.errors import StoreError
from router.store import Store, open_store
from tests.harness.common import eventually


async def write(
    store: Store, name: str, order: list[str], hold: asyncio.Event | None = None
) -> None:
    async with store.transaction() as conn:
        order.append(name)
        await conn.execute(sa.text("SELECT 1"))
        if hold is not None:
            await hold.wait()


async def test_a_waiting_writer_goes_before_the_holder_asks_again(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        order: list[str] = []
        release = asyncio.Event()
        holder = asyncio.create_task(write(store, "batch 1", order, release))
        await eventually(lambda: order == ["batch 1"], 2)
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
        release = asyncio.Event()
        order: list[str] = []
        holder = asyncio.create_task(write(store, "holder", order, release))
        await eventually(lambda: order == ["holder"], 2)
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
