"""The `run` fixture: a routing scenario on a fresh SQLite store (see scenarios.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.config import load_config
from router.simulate import Simulation
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, Run


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    from datetime import datetime

    sim = Simulation(load_config(CONFIG, env={}), store)
    await sim.start(datetime.fromisoformat(T0))
    yield Run(sim, [])
    await store.close()
