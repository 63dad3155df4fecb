"""The routing scenarios' harness: `simulate`'s engine on scenario.yaml, and its inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from router.envelope import Envelope
from router.routing.engine import Decision
from router.simulate import Simulation
from router.store.schema import incidents

CONFIG = Path(__file__).with_name("scenario.yaml")
T0 = "2026-03-02T10:00:00+00:00"


def at(minutes: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(T0) + timedelta(minutes=minutes)).isoformat()


@dataclass
class Run:
    sim: Simulation
    decisions: list[Decision]

    def actions(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    def out(self, topic_suffix: str) -> list[Envelope]:
        return [e for t, e in self.sim.published if t.endswith(topic_suffix)]

    async def step(self, **event: Any) -> list[Decision]:
        new = await self.sim.step(0, dict(event))
        self.decisions += new
        return new

    async def incidents(self) -> list[Any]:
        async with self.sim.store.transaction(readonly=True) as conn:
            return list((await conn.execute(sa.select(incidents))).all())


def mail(sender: str, thread: str, text: str, **kw: Any) -> dict[str, Any]:
    return {
        "channel": "mail",
        "from": sender,
        "name": sender.split("@")[0].title(),
        "thread": thread,
        "subject": kw.pop("subject", "Hello"),
        "text": text,
        "message_id": thread,
        # Opaque to the router: handed back unchanged on every reply in the thread.
        "reply_context": {"to": [sender], "message_id": thread},
        **kw,
    }
