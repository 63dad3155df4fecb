"""`run` and `compare`: a whole events file through a fresh simulation, then the report."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

from router.config import Config
from router.simulate import report
from router.simulate.core import Simulation
from router.simulate.events import when
from router.simulate.figures import ChannelFigures, channel_figures, compare
from router.simulate.outputs import Entry
from router.store import Store, open_store
from router.store.routing import seeded_ids

Format = Literal["json", "table"]


@asynccontextmanager
async def simulated(
    config: Config, events: Sequence[tuple[int, dict[str, Any]]], customers: Path | None
) -> AsyncIterator[tuple[Simulation, Store]]:
    """`events` run on `config` on a throwaway store, for the caller to read."""
    first_at = next((when(o["at"], n) for n, o in events if "at" in o), None)
    with tempfile.TemporaryDirectory(prefix="omnirouter-simulate-") as tmp, seeded_ids("simulate"):
        store = await open_store(f"sqlite:///{Path(tmp) / 'store.sqlite3'}")
        try:
            sim = Simulation(config, store)
            await sim.start(first_at)
            if customers is not None:
                await sim.load_customers(customers)
            for number, obj in events:
                await sim.step(number, dict(obj))
            yield sim, store
        finally:
            await store.close()


async def simulate(
    config: Config, events: Sequence[tuple[int, dict[str, Any]]], customers: Path | None
) -> tuple[list[Entry], list[ChannelFigures]]:
    """The timeline and the closing figures of `events` on `config`, on a throwaway store."""
    async with simulated(config, events, customers) as (sim, store):
        return sim.timeline, await channel_figures(store, sim.clock)


async def run(
    config: Config,
    events: Sequence[tuple[int, dict[str, Any]]],
    out: TextIO,
    *,
    fmt: Format = "json",
    customers: Path | None = None,
) -> int:
    timeline, figures = await simulate(config, events, customers)
    lines = report.table if fmt == "table" else report.json_lines
    _write(out, lines(timeline, figures))
    return 0


async def run_compare(
    old: Config,
    new: Config,
    events: Sequence[tuple[int, dict[str, Any]]],
    out: TextIO,
    *,
    fmt: Format = "json",
    customers: Path | None = None,
) -> int:
    comparison = compare(
        await simulate(old, events, customers), await simulate(new, events, customers)
    )
    lines = report.compare_table if fmt == "table" else report.json_compare
    _write(out, lines(comparison))
    return 0


def _write(out: TextIO, lines: Iterator[str]) -> None:
    for line in lines:
        out.write(line + "\n")
