"""`omnirouter agents`: who is there to take work, as the routing code sees them.

Status, load and capacity come from the same `agent_views` the router chooses
with, and reachability from `unreachable_agents` (the config and the installed
connectors): what this shows is what routing would act on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

import orjson

from router.bus.base import Topics
from router.config import Config
from router.ops.console import console, table
from router.routing.assign import agent_views
from router.routing.context import Routing
from router.routing.hours import changes
from router.store import Store

# How far ahead the next start or end of a shift is looked for.
SHIFT_HORIZON = timedelta(days=8)


@dataclass(frozen=True, slots=True)
class AgentLine:
    id: str
    name: str
    status: str
    shift: str  # "on", "off", or "always" (no schedule)
    shift_changes_at: datetime | None  # when it next starts or ends (UTC)
    load: dict[str, tuple[int, int]]  # channel type -> (open now, capacity)
    unreachable: str | None  # why deliveries cannot reach them; None: reachable

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "shift": self.shift,
            "shift_changes_at": self.shift_changes_at,
            "load": {t: {"open": n, "capacity": c} for t, (n, c) in self.load.items()},
            "reachable": self.unreachable is None,
            "unreachable": self.unreachable,
        }


async def agent_lines(config: Config, store: Store, now: datetime) -> list[AgentLine]:
    ctx = Routing(config, store, Topics(prefix=config.bus.topic_prefix))
    async with store.transaction(readonly=True) as conn:
        views = await agent_views(ctx, conn, now)
    kind = {c.name: c.type for c in config.channels}
    types = set(kind.values())
    lines = []
    for view in views:
        agent = ctx.agents[view.id]
        shift, changes_at = "always", None
        if agent.schedule is not None:
            shift = "on" if view.on_shift else "off"
            hours = config.business_hours[agent.schedule]
            upcoming = changes(hours, now, now + SHIFT_HORIZON, agent.timezone)
            changes_at = upcoming[0] if upcoming else None
        # The channel types the agent serves here (capacity defaults cover every installed
        # one), and any they still hold work on.
        served = {kind[c] for c in agent.channels if c in kind} if agent.channels else types
        kinds = sorted((served & set(view.capacity)) | {t for t, n in view.load.items() if n})
        load = {t: (view.load_for(t), view.capacity_for(t)) for t in kinds}
        lines.append(
            AgentLine(
                id=view.id,
                name=agent.name,
                status=view.status,
                shift=shift,
                shift_changes_at=changes_at,
                load=load,
                unreachable=view.unreachable,
            )
        )
    return lines


def show(lines: list[AgentLine], *, as_json: bool, out: IO[str] | None = None) -> None:
    if as_json:
        out = sys.stdout if out is None else out
        for line in lines:
            out.write(orjson.dumps(line.as_json()).decode() + "\n")
        return
    t = table("AGENT", "NAME", "STATUS", "SHIFT", "LOAD (open/capacity)", "REACHABLE")
    for line in lines:
        shift = line.shift
        if line.shift_changes_at is not None:
            verb = "ends" if line.shift == "on" else "starts"
            shift += f" ({verb} {line.shift_changes_at:%a %H:%M} UTC)"
        load = ", ".join(f"{t} {n}/{c}" for t, (n, c) in line.load.items()) or "-"
        reach = "yes" if line.unreachable is None else f"unreachable: {line.unreachable}"
        t.add_row(line.id, line.name, line.status, shift, load, reach)
    console(out).print(t if lines else "no agents in the config")
