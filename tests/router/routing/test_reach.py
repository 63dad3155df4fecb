"""Work goes only to agents who can receive it, and only sinks that can accept time out.

The scenarios run scenario.yaml with its `mail` channel enabled (email has a
runtime, so Ana and Ben are reachable) and the daemon's reachability rule on;
Cy's only sink is the `tg` channel: disabled, or a type with no runtime here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from router.bus.base import Topics
from router.config import load_config, parse_config
from router.connector import load_registry
from router.routing.context import Routing
from router.simulate import Simulation
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail
from tests.router.routing.test_scenarios import tg

ENV = {"P": "imap-password", "T": "123:bot-token", "S": "a-webhook-secret-of-16+"}
MAIL_OFF = "type: email\n    enabled: false"
MAIL_ON = "type: email\n    enabled: true"


def config_text(*, cy_sink: str | None = None) -> str:
    text = CONFIG.read_text().replace(MAIL_OFF, MAIL_ON)
    if cy_sink is not None:
        old = 'sink: {type: telegram, channel: tg, address: "4242"}'
        assert old in text
        text = text.replace(old, cy_sink)
    return text


async def started(tmp_path: Path, text: str, *, reachability: bool) -> Simulation:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    config = load_config(path, env=ENV)
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    sim = Simulation(config, store, reachability=reachability)
    await sim.start(datetime.fromisoformat(T0))
    return sim


@pytest.fixture
async def reach(tmp_path: Path) -> AsyncIterator[Run]:
    sim = await started(tmp_path, config_text(), reachability=True)
    yield Run(sim, [])
    await sim.store.close()


async def test_an_unreachable_agent_is_passed_over_and_named(reach: Run) -> None:
    # Ben has a conversation, Cy none: by load alone, Cy would get the next one.
    await reach.step(**mail("a@shop.test", "<a@x>", "an error again"))
    assert reach.actions("assign")[-1].agent == "ben"
    await reach.step(**tg("901", "the app shows an error"))
    last = reach.actions("assign")[-1]
    assert last.agent == "ben"
    assert last.reason["skipped"]["cy"] == "unreachable: sink channel tg is disabled"
    assert not reach.out("agent.tg")  # nothing waits on a topic nobody reads


async def test_nobody_reachable_queues_and_says_why(reach: Run) -> None:
    await reach.step(agent="ben", command="away")
    await reach.step(**tg("901", "the app shows an error"))
    assert not reach.actions("assign")
    [queued] = reach.actions("queue")
    assert queued.reason["skipped"]["cy"] == "unreachable: sink channel tg is disabled"
    assert queued.reason["skipped"]["ben"] == "status away"


async def test_an_unreachable_last_agent_is_not_waited_for(reach: Run) -> None:
    # A transfer to Cy by name would wait for her like a last agent; she cannot be
    # reached, so it waits for whoever can take it instead, and says why.
    await reach.step(**tg("901", "the app shows an error"))
    assert reach.actions("assign")[-1].agent == "ben"
    await reach.step(agent="ben", command="transfer", args=["cy"], conversation="tg/901")
    [queued] = reach.actions("queue")
    assert queued.reason["rule"] == "queued"  # not waiting_for_last_agent
    assert queued.reason["skipped"]["cy"] == "unreachable: sink channel tg is disabled"
    assert [d.agent for d in reach.actions("assign")] == ["ben"]


def test_a_channel_whose_type_has_no_runtime_is_unreachable() -> None:
    # The loader refuses to enable such a channel; a registry given by a caller (the
    # daemon's) may still lack the runtime of a type the config was checked against.
    registry = load_registry()
    config = parse_config(config_text(), env=ENV, registry=registry)
    without_email = {**registry, "email": dataclasses.replace(registry["email"], factory=None)}
    routing = Routing(config, store=None, topics=Topics(prefix="omni."), registry=without_email)  # type: ignore[arg-type]
    assert routing.unreachable == {
        "ana": "no email connector in this build (sink channel mail)",
        "ben": "no email connector in this build (sink channel mail)",
        "cy": "sink channel tg is disabled",
    }


async def test_simulate_counts_every_agent_reachable_by_default(tmp_path: Path) -> None:
    sim = await started(tmp_path, config_text(), reachability=False)
    run = Run(sim, [])
    try:
        await run.step(agent="ben", command="away")
        await run.step(**tg("901", "the app shows an error"))
        assert run.actions("assign")[-1].agent == "cy"
    finally:
        await sim.store.close()


def test_reachability_is_recomputed_on_reload() -> None:
    registry = load_registry()
    routing = Routing(
        parse_config(config_text(), env=ENV, registry=registry),
        store=None,  # type: ignore[arg-type]
        topics=Topics(prefix="omni."),
        registry=registry,
    )
    assert routing.unreachable == {"cy": "sink channel tg is disabled"}
    routing.configure(parse_config(CONFIG.read_text(), env={}, registry=registry))
    assert set(routing.unreachable) == {"ana", "ben", "cy"}  # every channel off


# --- the accept timeout -----------------------------------------------------------

HOOKS = """\
  - name: hooks
    type: webhook
    enabled: false
    webhook: {secret: "${S}"}
skills:"""


@pytest.mark.parametrize(
    ("accepts", "reassigned"),
    [("", False), (", accepts: true", True), (", accepts: false", False)],
)
async def test_the_accept_timeout_applies_only_to_sinks_that_can_accept(
    tmp_path: Path, accepts: str, reassigned: bool
) -> None:
    # Cy works from a webhook tool: a plain incoming webhook (Slack-style) that cannot
    # answer (the type's default), or one that sends `accept` (`accepts: true`).
    text = config_text(
        cy_sink=f"sink: {{type: webhook, channel: hooks, url: https://hooks.test/cy{accepts}}}"
    ).replace("skills:", HOOKS, 1)
    sim = await started(tmp_path, text, reachability=False)
    run = Run(sim, [])
    try:
        await run.step(agent="ben", command="away")
        await run.step(**tg("901", "the app shows an error"))
        first = run.actions("assign")[-1]
        assert first.agent == "cy"
        await run.step(agent="ben", command="available")
        await run.step(at=at(5))  # well past routing.assignment_timeout (90s)
        if reassigned:
            [reassign] = run.actions("reassign")
            assert reassign.agent == "cy"
            assert run.actions("assign")[-1].agent == "ben"
        else:
            assert not run.actions("reassign")
            assert run.actions("assign")[-1].agent == "cy"  # she keeps it
    finally:
        await sim.store.close()
