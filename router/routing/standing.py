"""Where a waiting customer stands: their queue position and expected wait.

The acknowledgement carries it as a typed `standing` part on every channel
(the channel shows it or not). On channel types that declare `live_standing`
it is told again whenever it changes, and never on the others: their customers
would get a message for every assignment ahead of them.

Position: 1 + the conversations waiting ahead in the same queue on the same
channel type (agents' capacity is per channel type: a chat never waits behind
mail). The expected wait is the promised first response (`due`, business-hours
aware, the time the acknowledgement's text promises).

Updates. A unit of work that changes a line's order (assigns a conversation
that waited, queues one, moves one to another queue) notes the line; at its
end `notify` looks at the line's first `LOOK_AHEAD` and schedules a `standing`
timer for each whose position is not the one it was last told. The timer runs
on that conversation's own key, in order with its messages (its facts are
written only there, as every conversation's are), and tells the position as
it is then, at most once per `routing.standing_interval`: a change meanwhile is
told when the interval ends (the timer is due then), and a burst of changes is
one timer (its key names the last telling). Once an agent has the
conversation nothing more is told.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from router.envelope import Envelope, Standing, encode
from router.routing.context import Routing, Unit
from router.routing.delivery import to_customer
from router.store import routing as db

# Why a cap: each assignment moves everyone behind it, so telling all N waiting
# would be N timers per assignment and N² while a line drains. Near the head a
# change is news ("number 3" -> "number 2"); further back it is not, and those
# customers had their position in the acknowledgement and hear again once
# they come within LOOK_AHEAD. Cost per changed line: one indexed query of
# LOOK_AHEAD rows and at most LOOK_AHEAD timer rows.
LOOK_AHEAD = 10
STANDING_TIMER = "standing"
# A conversation's `thread_meta` key: the position last told, when, and how
# many times its timer has fired (part of the next timer's key).
TOLD = "standing"


def live(ctx: Routing, channel_type: str) -> bool:
    spec = ctx.registry.get(channel_type)
    return spec is not None and spec.live_standing


def moved(ctx: Routing, unit: Unit, conv: Any, queue: str | None = None) -> None:
    """The order of `conv`'s line (its queue, or `queue` it left) changed in this unit."""
    if live(ctx, conv.channel_type):
        unit.moved.add((queue if queue is not None else conv.queue, conv.channel_type))


async def standing_of(unit: Unit, conv: Any) -> Standing:
    due = conv.sla_due_at
    return Standing(
        position=await db.queue_position(unit.conn, conv),
        queue=conv.queue,
        due=due,
        wait=max(0, int((due - unit.now).total_seconds())) if due is not None else None,
    )


def waits(conv: Any) -> bool:
    return conv.status == "open" and conv.owner_agent_id is None and conv.waiting_since is not None


async def amend_ack(
    ctx: Routing, unit: Unit, conv_id: str, ack: tuple[Callable[[], int], Envelope]
) -> None:
    """The conversation was acknowledged, then routed, in this unit: if it waits, its
    acknowledgement (still in this transaction's outbox) carries where it stands."""
    conv = await db.reload(unit.conn, conv_id)
    if not waits(conv):
        return
    standing = await standing_of(unit, conv)
    row, env = ack
    await db.amend_outbox(unit.conn, row(), encode(env.model_copy(update={"standing": standing})))
    if live(ctx, conv.channel_type):
        told = {**_told(conv), "position": standing.position, "at": unit.now.isoformat()}
        await _remember(unit, conv, told)


async def notify(ctx: Routing, unit: Unit) -> None:
    """Schedule an update for the first LOOK_AHEAD of every line this unit changed whose
    position is not the one they were last told."""
    lines, unit.moved = unit.moved, set()
    for queue, channel_type in sorted(lines, key=lambda line: (line[0] or "", line[1])):
        rows = await db.waiting_in(unit.conn, queue, channel_type, LOOK_AHEAD)
        for position, conv in enumerate(rows, 1):
            told = _told(conv)
            if told.get("position") != position:
                await _schedule(ctx, unit, conv, told)


async def tell(ctx: Routing, unit: Unit, conv: Any) -> None:
    """The `standing` timer: tell the customer where they stand now, if it changed and
    the interval since the last telling has passed (else when it has)."""
    if not waits(conv) or not live(ctx, conv.channel_type):
        return  # an agent has it, or it is closed: nothing more is told
    told = _told(conv)
    fired = {**told, "n": int(told.get("n", 0)) + 1}  # the next timer gets a new key
    standing = await standing_of(unit, conv)
    if standing.position == told.get("position"):
        await _remember(unit, conv, fired)  # changed and changed back: nothing new
        return
    if unit.now < _next_allowed(ctx, told, unit.now):
        conv = await _remember(unit, conv, fired)
        await _schedule(ctx, unit, conv, fired)
        return
    await to_customer(
        ctx, unit, conv, "", purpose="standing", auto=True, standing=standing, record=False
    )
    await _remember(
        unit, conv, {**fired, "position": standing.position, "at": unit.now.isoformat()}
    )
    unit.decide(
        "standing",
        conversation_id=conv.id,
        queue=conv.queue,
        reason={
            "position": standing.position,
            "was": told.get("position"),
            "due": standing.due.isoformat() if standing.due else None,
        },
    )


def _told(conv: Any) -> dict[str, Any]:
    told = (conv.thread_meta or {}).get(TOLD)
    return dict(told) if isinstance(told, dict) else {}


def _next_allowed(ctx: Routing, told: dict[str, Any], now: datetime) -> datetime:
    at = told.get("at")
    if not isinstance(at, str):
        return now
    return datetime.fromisoformat(at) + ctx.config.routing.standing_interval


async def _schedule(ctx: Routing, unit: Unit, conv: Any, told: dict[str, Any]) -> None:
    """One pending timer per telling: every change until it fires finds its key taken."""
    due = max(unit.now, _next_allowed(ctx, told, unit.now))
    await db.schedule_timer(
        unit.conn,
        f"{STANDING_TIMER}:{conv.id}:{int(told.get('n', 0))}",
        conv.id,
        STANDING_TIMER,
        due,
        {},
        unit.now,
    )


async def _remember(unit: Unit, conv: Any, told: dict[str, Any]) -> Any:
    meta = {**(conv.thread_meta or {}), TOLD: told}
    return await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
