"""simulate's clock and ids: every shift boundary between two events is seen, at its
minute, and the same events give the same ids."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from router.config import load_config
from router.config.people import BusinessHoursConfig
from router.routing.hours import changes
from router.simulate import Simulation
from router.store import open_store
from router.store import routing as db
from router.store.schema import assignments
from tests.harness.daemon import ROOT

CONFIG = ROOT / "tests" / "router" / "routing" / "scenario.yaml"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def early_config(tmp: Path) -> Any:
    """The scenario config with Ben (the only tech agent on mail) at work 03:10-03:40."""
    data = yaml.safe_load(CONFIG.read_text())
    data["business_hours"] = {"early": {"timezone": "UTC", "weekly": {"mon": ["03:10-03:40"]}}}
    data["agents"][1]["schedule"] = "early"
    path = tmp / "early.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path, env={})


async def test_a_whole_shift_between_two_events_takes_the_waiting_work(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        sim = Simulation(early_config(tmp_path), store)
        await sim.start(at("2026-03-02T02:00:00"))
        queued = await sim.step(
            1, {"channel": "mail", "from": "gus@shop.test", "text": "the app shows an error"}
        )
        assert "queue" in [d.action for d in queued]
        # The next event comes after Ben's shift is over: the walk must still stop in it.
        await sim.step(2, {"at": "2026-03-02T06:00:00Z"})
        async with store.transaction(readonly=True) as conn:
            rows = (await conn.execute(sa.select(assignments))).all()
        assert [(r.agent_id, r.assigned_at) for r in rows] == [("ben", at("2026-03-02T03:10:00"))]
    finally:
        await store.close()


def test_changes_lists_every_opening_and_closing_in_the_range() -> None:
    hours = BusinessHoursConfig.model_validate(
        {"timezone": "Europe/Madrid", "weekly": {"mon": ["09:00-14:00", "15:00-18:00"]}}
    )
    # Monday 2 March 2026: Madrid is UTC+1.
    assert changes(hours, at("2026-03-02T00:00:00"), at("2026-03-02T16:00:00")) == [
        at("2026-03-02T08:00:00"),
        at("2026-03-02T13:00:00"),
        at("2026-03-02T14:00:00"),
    ]
    # Read in the agent's own zone, as `on_shift` reads it; the start is excluded.
    assert changes(hours, at("2026-03-02T09:00:00"), at("2026-03-02T23:00:00"), "UTC") == [
        at("2026-03-02T14:00:00"),
        at("2026-03-02T15:00:00"),
        at("2026-03-02T18:00:00"),
    ]


def test_seeded_ids_repeat_and_random_ids_do_not() -> None:
    with db.seeded_ids("s"):
        first = [db.new_id(), db.new_ref(), db.new_id()]
    with db.seeded_ids("s"):
        second = [db.new_id(), db.new_ref(), db.new_id()]
    assert first == second and first[0] != first[2]
    assert len(first[1]) == 7 and set(first[1]) <= set("23456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    assert db.new_id() != db.new_id()  # outside: random, as in the daemon
