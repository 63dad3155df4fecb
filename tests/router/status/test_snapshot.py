"""The floor's snapshot, read from a SQLite store that the real routing code filled
(`simulate`'s engine on the routing scenarios' config), and the page drawn from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.config import load_config
from router.simulate import Simulation
from router.status.page import render, span
from router.status.snapshot import Floor, Status, take_floor
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, at, mail

START = datetime.fromisoformat(T0)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulation]:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    simulation = Simulation(load_config(CONFIG, env={}), store)
    await simulation.start(START)
    yield simulation
    await store.close()


async def floor_at(sim: Simulation, minutes: float) -> Floor:
    return await take_floor(
        sim.config, sim.store, START + timedelta(minutes=minutes), routing=sim.engine.ctx
    )


async def test_queues_count_the_waiting_and_their_longest_wait(sim: Simulation) -> None:
    # Ana and Ben take one email each; the third and fourth wait, from minute 1 and 2.
    await sim.step(0, mail("a@x.test", "t1", "hello", at=at(0)))
    await sim.step(1, mail("b@x.test", "t2", "hello", at=at(0)))
    await sim.step(2, mail("c@x.test", "t3", "hello", at=at(1)))
    await sim.step(3, mail("d@x.test", "t4", "my invoice please", at=at(2)))
    floor = await floor_at(sim, 5)
    queues = {q.name: q for q in floor.queues}
    assert list(queues) == ["general", "billing", "complaints", "returns"]  # as configured
    assert queues["general"].depth == 1
    assert queues["general"].oldest_since == START + timedelta(minutes=1)
    assert queues["billing"].depth == 1
    assert queues["complaints"].depth == 0 and queues["complaints"].oldest_since is None
    agents = {a.id: a for a in floor.agents}
    assert [(x.channel_type, x.open, x.capacity) for x in agents["ana"].load] == [("email", 1, 1)]
    assert agents["cy"].load == ()  # no email capacity, nothing open
    assert all(a.unreachable is None for a in floor.agents)  # simulate reaches everyone


async def test_at_risk_are_the_unanswered_past_their_warning_soonest_first(
    sim: Simulation,
) -> None:
    # Email targets: 1 h (normal), 30 min (high); warned at half the target.
    await sim.step(0, mail("a@x.test", "t1", "hello", at=at(0)))  # due 11:00
    await sim.step(1, mail("b@x.test", "t2", "urgent please", at=at(30)))  # high: due 11:00
    await sim.step(2, mail("c@x.test", "t3", "hello", at=at(31)))  # due 11:31, waits
    assert (await floor_at(sim, 29)).at_risk_count == 0
    assert (await floor_at(sim, 31)).at_risk_count == 1  # the first is past its warning
    late = await floor_at(sim, 61)
    assert late.at_risk_count == 3
    assert [r.due_at for r in late.at_risk] == [at_time(60), at_time(60), at_time(91)]
    assert late.at_risk[2].owner is None and late.at_risk[2].waiting_since is not None
    html = render(Status(floor=late), refresh_seconds=15)
    assert html.count("overdue by 1 min") == 2 and "30 min left" in html
    # Answered: no longer at risk.
    await sim.step(3, {"at": at(61), "agent": "ana", "reply": "Done!", "conversation": "mail/t1"})
    assert (await floor_at(sim, 61)).at_risk_count == 2


def at_time(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


async def test_incidents_are_today_s_only(sim: Simulation) -> None:
    await sim.step(0, mail("a@x.test", "t1", "this is unacceptable", at=at(0)))
    floor = await floor_at(sim, 1)
    assert floor.incidents_today == 1
    assert floor.incidents[0].kind == "complaint"
    assert floor.incidents[0].ref  # the #REF agents and customers see
    tomorrow = await floor_at(sim, 24 * 60)
    assert tomorrow.incidents_today == 0 and tomorrow.incidents == ()


async def test_first_contact_resolution_today_per_channel_queue_and_agent(
    sim: Simulation,
) -> None:
    seen = [*await sim.step(0, mail("a@x.test", "t1", "hello", at=at(0)))]
    seen += await sim.step(0, mail("b@x.test", "t2", "hello", at=at(1)))
    first, second = (d.agent for d in seen if d.action == "assign")
    await sim.step(0, {"agent": first, "command": "resolve", "conversation": "mail/t1"})
    # The second is passed on before it is resolved: no first contact.
    seen += await sim.step(
        0, {"agent": second, "command": "transfer", "args": ["general"], "conversation": "mail/t2"}
    )
    third = [d.agent for d in seen if d.action == "assign"][-1]
    await sim.step(0, {"agent": third, "command": "resolve", "conversation": "mail/t2"})
    floor = await floor_at(sim, 5)
    lines = {(r.by, r.name): (r.resolved, r.first_contact, r.share) for r in floor.resolutions}
    assert lines[("channel", "mail")] == (2, 1, 0.5)
    assert lines[("agent", first)][1] == 1
    html = render(Status(floor=floor), refresh_seconds=20)
    assert "First-contact resolution today" in html and "50%" in html
    assert (await floor_at(sim, 24 * 60)).resolutions == ()  # today's only


async def test_praise_of_the_last_seven_days_per_agent(sim: Simulation) -> None:
    seen = [*await sim.step(0, mail("a@x.test", "t1", "hello", at=at(0)))]
    (agent,) = (d.agent for d in seen if d.action == "assign")
    await sim.step(0, {"agent": agent, "command": "resolve", "conversation": "mail/t1"})
    await sim.step(0, mail("a@x.test", "t1", "Thanks a lot, great job", at=at(3)))
    floor = await floor_at(sim, 5)
    assert floor.praise_week == ((agent, 1),)
    assert "Praise this week" in render(Status(floor=floor), refresh_seconds=20)
    assert (await floor_at(sim, 8 * 24 * 60)).praise_week == ()


async def test_the_page_escapes_what_it_shows_and_states_in_words(sim: Simulation) -> None:
    await sim.step(0, mail("a@x.test", "t1", "this is unacceptable", at=at(0)))
    floor = await floor_at(sim, 1)
    hostile = replace(floor.incidents[0], cause="<script>alert(1)</script>")
    html = render(Status(floor=replace(floor, incidents=(hostile,))), refresh_seconds=20)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert '<body data-refresh="20">' in html
    assert "Unknown: the daemon&#x27;s part is not available." in html
    for landmark in ("<main>", "<header>", "<footer>", "<caption", '<th scope="col">'):
        assert landmark in html


def test_spans_read_as_people_say_them() -> None:
    assert [span(timedelta(seconds=s)) for s in (5, 125, 3 * 3600 + 300, 50 * 3600)] == [
        "5 s",
        "2 min",
        "3 h 05 min",
        "2 d 2 h",
    ]
