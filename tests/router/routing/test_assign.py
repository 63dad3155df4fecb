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
