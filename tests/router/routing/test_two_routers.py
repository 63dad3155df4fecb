"""Two router processes on one store: each holds its own board of agents, the store decides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from router.config import load_config
from router.routing import assign
from router.simulate import Simulation
from router.store import open_store
from router.store.schema import agent_load, conversations

CONFIG = Path(__file__).with_name("scenario.yaml")
T0 = datetime.fromisoformat("2026-03-02T10:00:00+00:00")


def mail(sender: str, text: str) -> dict[str, Any]:
    return {"channel": "mail", "from": sender, "thread": f"<{sender}>", "text": text}


@pytest.fixture
async def routers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Simulation, Simulation]]:
    """Two routers, each with its own store connection and board, on one SQLite file."""
    # Boards are re-read only after a refused pick here, never because time passed.
    monkeypatch.setattr(assign, "REFRESH", 3600.0)
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    config = load_config(CONFIG, env={})
    first_store, second_store = await open_store(url), await open_store(url)
    first, second = Simulation(config, first_store), Simulation(config, second_store)
    try:
        await first.start(T0)
        await second.start(T0)
        yield first, second
    finally:
        await first_store.close()
        await second_store.close()


async def test_a_stale_board_never_assigns_past_capacity_or_to_an_away_agent(
    routers: tuple[Simulation, Simulation],
) -> None:
    first, second = routers
    # The second router reads its board: everyone free.
    [tech] = [
        d for d in await second.step(1, mail("gus@x.test", "app crash")) if d.action == "assign"
    ]
    assert tech.agent == "ben"
    await second.step(
        2, {"agent": "ben", "command": "resolve", "conversation": "mail/<gus@x.test>"}
    )
    # The first router fills ana's only email slot and sends ben away.
    [billing] = [
        d
        for d in await first.step(3, mail("eva@x.test", "refund my invoice"))
        if d.action == "assign"
    ]
    assert billing.agent == "ana"
    await first.step(4, {"agent": "ben", "command": "away"})
    # The second router's board still shows both free for billing; the store refuses both.
    decisions = await second.step(5, mail("fay@x.test", "invoice refund please"))
    assert [d.action for d in decisions if d.action in ("assign", "queue")] == ["queue"]
    async with second.store.transaction(readonly=True) as conn:
        loads = dict(
            (
                await conn.execute(
                    sa.select(agent_load.c.agent_id, agent_load.c.open_count).where(
                        agent_load.c.channel_type == "email"
                    )
                )
            ).all()
        )
        waiting = await conn.scalar(
            sa.select(conversations.c.thread_key).where(conversations.c.waiting_since.is_not(None))
        )
    assert loads == {"ana": 1, "ben": 0}
    assert waiting == "<fay@x.test>"
    # Ben comes back through the first router: the waiting conversation is his.
    back = await first.step(6, {"agent": "ben", "command": "available"})
    [drained] = [d for d in back if d.action == "assign"]
    assert drained.agent == "ben"


async def test_a_stale_board_never_assigns_to_an_agent_who_went_away(
    routers: tuple[Simulation, Simulation],
) -> None:
    first, second = routers
    # The second router reads its board, routing a Telegram message (to anyone).
    tg = {"channel": "tg", "from": "77", "thread": "77", "text": "hello"}
    assert [d.action for d in await second.step(1, tg) if d.action == "assign"] == ["assign"]
    await first.step(2, {"agent": "ben", "command": "away"})
    # Only ben can take tech mail; the second router's board still shows him available.
    decisions = await second.step(3, mail("gus@x.test", "the app shows an error"))
    assert [d.action for d in decisions if d.action in ("assign", "queue")] == ["queue"]
    back = await first.step(4, {"agent": "ben", "command": "available"})
    assert [(d.action, d.agent) for d in back if d.action == "assign"] == [("assign", "ben")]


async def test_refused_twice_the_conversation_waits_and_says_why(
    routers: tuple[Simulation, Simulation], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, _ = routers
    tries: list[str] = []

    async def always_taken(conn: object, agent_id: str, *args: object) -> bool:
        tries.append(agent_id)  # another process takes each agent just before us
        return False

    monkeypatch.setattr(assign.db, "take_capacity", always_taken)
    decisions = await sim.step(1, mail("gus@x.test", "the app shows an error"))
    [queued] = [d for d in decisions if d.action in ("assign", "queue")]
    assert queued.action == "queue"
    assert queued.reason == {"rule": "queued", "detail": "ben was taken meanwhile"}
    assert tries == ["ben", "ben"]  # picked, refused, board read again, refused again
