"""`omnirouter status` as tables (rich), from the same `Status` as the page."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from router.status.page import clock, span
from router.status.snapshot import AT_RISK_WITHIN, Status


def show(status: Status, out: TextIO) -> None:
    floor = status.floor
    tz = ZoneInfo(floor.timezone)
    now = floor.taken_at
    # No colour codes when piped; wide enough for the tables either way.
    console = Console(file=out, width=max(100, Console(file=out).width), highlight=False)
    console.print(
        f"Floor status at {_when(now, now, tz)} ({floor.timezone})", style="bold", soft_wrap=True
    )

    queues = Table(title="Queues", title_justify="left")
    queues.add_column("Queue")
    queues.add_column("Waiting", justify="right")
    queues.add_column("Oldest wait")
    for q in floor.queues:
        oldest = span(now - q.oldest_since) if q.oldest_since else "-"
        queues.add_row(q.name or "(no queue)", str(q.depth), oldest)
    console.print(queues)

    window = int(AT_RISK_WITHIN.total_seconds() // 60)
    risk = Table(
        title=f"At risk: {floor.at_risk_count} (past the SLA warning or due within {window} min)",
        title_justify="left",
    )
    for col in ("Conversation", "Channel", "Queue", "Agent", "Priority", "Time left"):
        risk.add_column(col)
    for r in floor.at_risk:
        left = r.due_at - now
        text = f"overdue by {span(-left)}" if left.total_seconds() < 0 else span(left)
        risk.add_row(
            f"#{r.ref}" if r.ref else r.conversation_id[:8],
            r.channel,
            r.queue or "-",
            r.owner or "unassigned",
            r.priority,
            text,
        )
    if floor.at_risk:
        console.print(risk)
    else:
        console.print(risk.title, soft_wrap=True)

    agents = Table(title="Agents", title_justify="left")
    for col in ("Agent", "Status", "Shift", "Load", "Reachable"):
        agents.add_column(col)
    for a in floor.agents:
        shift = "on shift" if a.on_shift else "off shift"
        if a.shift_changes_at is not None:
            shift += f" ({'until' if a.on_shift else 'from'} {_when(a.shift_changes_at, now, tz)})"
        load = ", ".join(f"{x.channel_type} {x.open}/{x.capacity}" for x in a.load) or "-"
        agents.add_row(
            a.id, a.status, shift, load, "yes" if a.unreachable is None else f"no: {a.unreachable}"
        )
    console.print(agents)

    if status.runtime is None:
        console.print(f"Channels: unknown ({status.runtime_note})", soft_wrap=True)
    else:
        channels = Table(title="Channels", title_justify="left")
        for col in ("Channel", "Type", "State", "Why"):
            channels.add_column(col)
        for c in status.runtime.channels:
            why = c.reason or ""
            if c.state == "down" and c.next_attempt is not None:
                why += f" (next attempt {_when(c.next_attempt, now, tz)})"
            channels.add_row(c.name, c.type, c.state, why)
        console.print(channels)

    incidents = Table(title=f"Incidents today: {floor.incidents_today}", title_justify="left")
    for col in ("When", "Kind", "Conversation", "Channel", "Cause"):
        incidents.add_column(col)
    for i in floor.incidents:
        incidents.add_row(
            _when(i.created_at, now, tz),
            i.kind,
            f"#{i.ref}" if i.ref else (i.conversation_id or "-")[:12],
            i.channel or "-",
            i.cause,
        )
    if floor.incidents:
        console.print(incidents)
    else:
        console.print(incidents.title, soft_wrap=True)

    resolutions = Table(title="First-contact resolution today", title_justify="left")
    for col in ("By", "Name", "Resolved", "First contact", "Share"):
        resolutions.add_column(col)
    for res in floor.resolutions:
        share = "-" if res.share is None else f"{res.share:.0%}"
        resolutions.add_row(res.by, res.name, str(res.resolved), str(res.first_contact), share)
    if floor.resolutions:
        console.print(resolutions)
    else:
        console.print(f"{resolutions.title}: nothing resolved", soft_wrap=True)

    if floor.praise_week:
        praise = Table(title="Praise this week", title_justify="left")
        praise.add_column("Agent")
        praise.add_column("Praise", justify="right")
        for agent, count in floor.praise_week:
            praise.add_row(agent, str(count))
        console.print(praise)
    else:
        console.print("Praise this week: none", soft_wrap=True)

    dead = f"Dead letters: {floor.dead_outputs} output(s) kept in the store"
    if status.runtime is not None:
        dead += f"; {status.runtime.dead_letters} since the daemon started"
    console.print(dead, soft_wrap=True)
    if status.runtime is not None:
        reload = status.runtime.reload
        if reload is None:
            console.print("Last config reload: none since the start", soft_wrap=True)
        else:
            console.print(
                f"Last config reload: {reload.result} at {_when(reload.at, now, tz)}",
                soft_wrap=True,
            )
            for line in reload.detail:
                console.print(f"  {line}", soft_wrap=True)


def _when(at: datetime, now: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return clock(at, tz)
    return local.strftime("%a %d %b %H:%M")
