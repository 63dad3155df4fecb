"""A routing scenario on a config of our choice (office.yaml by default), from a given time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from router.config import load_config
from router.simulate import Simulation
from router.store import open_store
from router.store.schema import timers
from tests.router.routing.scenarios import Run

OFFICE = Path(__file__).with_name("office.yaml")
SHIPPED = Path(__file__).parents[3] / "config" / "channels.yaml"


@asynccontextmanager
async def scenario(tmp: Path, start: str, config: Path = OFFICE) -> AsyncIterator[Run]:
    store = await open_store(f"sqlite:///{tmp / 'store.sqlite3'}")
    try:
        sim = Simulation(load_config(config, env={}), store)
        await sim.start(datetime.fromisoformat(start))
        yield Run(sim, [])
    finally:
        await store.close()


async def timer_rows(run: Run, kind: str) -> list[sa.Row[tuple[object, ...]]]:
    async with run.sim.store.transaction(readonly=True) as conn:
        stmt = sa.select(timers).where(timers.c.kind == kind).order_by(timers.c.id)
        return list((await conn.execute(stmt)).all())
