"""Assigning while the clock's unit of work runs beside the router's, on one agents' board."""

from __future__ import annotations

from typing import Any

import pytest

from router.routing import assign
from tests.router.routing.scenarios import Run, mail


async def test_the_board_dropped_by_a_concurrent_failure_does_not_fail_an_assignment(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another unit of work failing while this one waits on the store drops `ctx.board`
    (it may hold changes that never committed); this assignment still completes."""
    real = assign.db.take_capacity
    ctx = run.sim.engine.ctx

    async def take_capacity(*args: Any, **kw: Any) -> bool:
        taken = await real(*args, **kw)
        ctx.board = None  # as Routing.transaction does when the clock's transaction fails
        return taken

    monkeypatch.setattr(assign.db, "take_capacity", take_capacity)
    await run.step(**mail("eva@shop.test", "<b@x>", "My invoice is wrong"))
    [assigned] = run.actions("assign")
    assert assigned.agent == "ana"
    assert len(run.out(".agent.mail")) == 1


async def test_a_customer_and_conversation_new_in_the_unit_skip_the_assignment_lookups(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What one record's unit created nobody else has seen, and it holds no assignment yet:
    its last agent and who transferred it away are not asked of the store. A returning
    customer's last agent still is, and the new conversation waits for them."""
    asked: list[str] = []
    for name in ("last_agent_of", "transferred_away_by"):
        real = getattr(assign.db, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            asked.append(_name)
            return await _real(*args, **kw)

        monkeypatch.setattr(assign.db, name, counted)

    await run.step(**mail("eva@shop.test", "<a@x>", "My invoice is wrong"))
    [first] = run.actions("assign")
    assert asked == []

    await run.step(**mail("eva@shop.test", "<b@x>", "And the one before it"))
    assert asked == ["last_agent_of"]  # the new conversation itself has no assignment yet
    [queued] = run.actions("queue")  # ana has no room for a second email: it waits for her
    assert queued.reason["rule"] == "waiting_for_last_agent"
    assert queued.reason["agent"] == first.agent
