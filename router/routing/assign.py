"""Assigning: gather the agents' state, ask the pure choice, apply it, or wait in the queue."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from router.routing import signals, standing
from router.routing.board import REFRESH, AgentBoard
from router.routing.choose import AgentView, Choice, Need, can_take, choose_agent
from router.routing.context import Routing, Unit
from router.routing.delivery import deliver
from router.routing.hours import on_shift
from router.routing.overflow import cancel_overflow, schedule_overflow
from router.routing.queueing import LEVEL_NAMES, queue_rank
from router.store import routing as db
from router.store.conn import Conn

DRAIN_SCAN = 500  # waiting conversations considered per drain pass


async def agent_views(ctx: Routing, conn: Conn, now: datetime) -> list[AgentView]:
    rows = await db.agent_rows(conn)
    load = await db.loads(conn)
    views = []
    for a in ctx.config.agents:
        row = rows.get(a.id)
        capacity = {**ctx.default_capacity, **a.capacity}
        views.append(
            AgentView(
                id=a.id,
                skills=a.skills,
                languages=frozenset(a.languages),
                channels=frozenset(a.channels),
                capacity=capacity,
                load=load.get(a.id, {}),
                status=row.status if row is not None else a.status,
                on_shift=on_shift(a, ctx.config.business_hours, now),
                last_assigned_at=row.last_assigned_at if row is not None else None,
                supervisor=a.supervisor,
                unreachable=ctx.unreachable.get(a.id),
            )
        )
    return views


def need_of(ctx: Routing, conv: Any) -> Need:
    skills = dict(conv.skills or {})
    queue = ctx.queues.get(conv.queue) if conv.queue else None
    if queue is not None:
        for skill, level in queue.skills.items():
            skills[skill] = max(level, skills.get(skill, 0))
    language = conv.language if conv.language in ctx.spoken else None
    return Need(
        channel=conv.channel, channel_type=conv.channel_type, skills=skills, language=language
    )


async def board_for(ctx: Routing, unit: Unit) -> AgentBoard:
    """The agents' live state: the process's board, read again from the store when stale."""
    board = ctx.board
    if board is None or time.monotonic() - board.read_at > REFRESH:
        return await read_board(ctx, unit)
    config = ctx.config
    board.update_shifts(
        unit.now, lambda agent_id: on_shift(ctx.agents[agent_id], config.business_hours, unit.now)
    )
    return board


async def read_board(ctx: Routing, unit: Unit) -> AgentBoard:
    """Read the agents' state from the store into a new board for this process."""
    views = await agent_views(ctx, unit.conn, unit.now)
    board = ctx.board = AgentBoard(views, read_at=time.monotonic(), shifts_at=unit.now)
    return board


async def set_status(ctx: Routing, unit: Unit, agent_id: str, status: str) -> bool:
    """An agent's presence, in the store and on the board; True if it changed."""
    changed = await db.set_agent_status(unit.conn, agent_id, status, unit.now)
    if ctx.board is not None:
        ctx.board.set_status(agent_id, status)
    return changed


async def release_capacity(ctx: Routing, unit: Unit, agent_id: str, channel_type: str) -> None:
    await db.release_capacity(unit.conn, agent_id, channel_type)
    if ctx.board is not None:
        ctx.board.add_load(agent_id, channel_type, -1)


async def release(ctx: Routing, unit: Unit, conv: Any, why: str) -> tuple[str | None, Any]:
    """End the conversation's assignment (`why`), give back its agent's capacity and
    clear its owner; returns that agent (None: it had none) and the updated conversation."""
    agent_id = await db.end_assignment(unit.conn, conv.id, why, unit.now)
    if agent_id is not None:
        await release_capacity(ctx, unit, agent_id, conv.channel_type)
    return agent_id, await db.update_conversation(unit.conn, conv.id, owner_agent_id=None)


async def release_removed_owner(ctx: Routing, unit: Unit, conv: Any) -> Any:
    """The owner is no longer in the config: end their assignment so the conversation,
    with its whole transcript, goes to routing again. Returns the updated conversation."""
    agent_id = conv.owner_agent_id
    _, conv = await release(ctx, unit, conv, "agent no longer configured")
    unit.decide(
        "reassign",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"detail": f"agent {agent_id} is no longer configured", "from": agent_id},
    )
    return conv


async def route(
    ctx: Routing,
    unit: Unit,
    conv: Any,
    *,
    widen: bool = False,
    exclude: Collection[str] | Mapping[str, str] = (),
) -> bool:
    """Assign the conversation or leave it waiting; True when assigned."""
    need = need_of(ctx, conv)
    waiting_allowed = not widen and conv.prefer_until is not None and unit.now < conv.prefer_until
    # A second try after the store refused the first pick: the board was stale
    # (another router process changed that agent), and is read again.
    for _ in range(2):
        board = await board_for(ctx, unit)
        while True:  # at most twice: the agent handed back to is passed over next time
            choice = choose_agent(
                board,
                need,
                last_agent_id=conv.preferred_agent_id,
                wait_for_last_agent=waiting_allowed,
                exclude=exclude,
            )
            if not await handed_back(unit, conv, choice):
                break
            assert choice.agent_id is not None
            exclude = passing_over(exclude, choice.agent_id)
        if choice.agent_id is None:
            break
        if await assign(ctx, unit, conv, choice):
            return True
        ctx.board = None
    else:  # refused twice: other processes are busy with these agents; wait for capacity
        assert choice.agent_id is not None
        detail = await refusal(unit, choice.agent_id)
        choice = Choice(agent_id=None, rule="queued", reason={"rule": "queued", "detail": detail})
    await wait(ctx, unit, conv, choice)
    return False


async def handed_back(unit: Unit, conv: Any, choice: Choice) -> bool:
    """True when the choice is the agent who transferred this conversation away, and
    nobody has had it since: it waits for someone else instead (docs/routing.md, Agents).
    Not when they are chosen as its preferred agent: someone transferred it to them."""
    if choice.agent_id is None or choice.rule == "last_agent" or unit.unassigned(conv.id):
        return False
    return await db.transferred_away_by(unit.conn, conv.id) == choice.agent_id


def passing_over(exclude: Collection[str] | Mapping[str, str], agent_id: str) -> dict[str, str]:
    """`exclude` with the agent who transferred the conversation away, each with why."""
    if isinstance(exclude, Mapping):
        passed = dict(exclude)
    else:
        passed = dict.fromkeys(exclude, "did not take it in time")
    passed[agent_id] = "transferred it away"
    return passed


async def refusal(unit: Unit, agent_id: str) -> str:
    """Why the store refused an agent the board offered, as the store sees it now."""
    row = (await db.agent_rows(unit.conn, [agent_id])).get(agent_id)
    if row is None:  # the board shows configured agents; rows come from start-up and reloads
        return f"{agent_id} has no row in the store (configured but never created)"
    if row.status != "available":
        return f"{agent_id} became {row.status} meanwhile"
    return f"{agent_id} was taken meanwhile"


async def assign(ctx: Routing, unit: Unit, conv: Any, choice: Choice) -> bool:
    """Give the conversation to the chosen agent; False if the store says they cannot take it."""
    agent_id = choice.agent_id
    # This board, held across the awaits below: the clock's concurrent unit of work may
    # drop `ctx.board` meanwhile (its transaction failed), and a new one is read then.
    board = ctx.board
    assert agent_id is not None and board is not None
    view = board.get(agent_id)
    assert view is not None
    capacity = view.capacity_for(conv.channel_type)
    at = board.assigned_at(unit.now)  # orders this agent behind everyone assigned before
    if not await db.take_capacity(unit.conn, agent_id, conv.channel_type, capacity, at):
        return False  # another router process took the last slot or changed their status
    board.add_load(agent_id, conv.channel_type, 1, at=at)
    if conv.waiting_since is not None:  # it leaves its line: everyone behind moves up
        standing.moved(ctx, unit, conv)
    await unit.start_assignment(conv.id, agent_id, choice.reason)
    await cancel_overflow(unit, conv)
    conv = await owned_by(unit, conv, agent_id)
    # An agent whose tool can say "I take it" (a button, a command) and does not
    # within routing.assignment_timeout is passed over; one whose tool cannot keeps it.
    if agent_id in ctx.accepting:
        await db.schedule_timer(
            unit.conn,
            f"assignment_timeout:{conv.id}:{unit.now.isoformat()}",
            conv.id,
            "assignment_timeout",
            unit.now + ctx.config.routing.assignment_timeout,
            {"agent": agent_id},
            unit.now,
        )
    await deliver(ctx, unit, conv, agent_id, "assigned", choice.reason)
    await signals.assigned(ctx, unit, conv, agent_id)
    unit.decide(
        "assign",
        conversation_id=conv.id,
        agent=agent_id,
        queue=conv.queue,
        priority=LEVEL_NAMES[conv.priority],
        reason=choice.reason,
    )
    return True


async def owned_by(unit: Unit, conv: Any, agent_id: str) -> Any:
    """`conv` with `agent_id` its owner: out of its line, no preference left."""
    return await db.update_conversation(
        unit.conn,
        conv.id,
        owner_agent_id=agent_id,
        waiting_since=None,
        queue_rank=None,
        preferred_agent_id=None,
        prefer_until=None,
        updated_at=unit.now,
    )


async def wait(ctx: Routing, unit: Unit, conv: Any, choice: Choice) -> None:
    since = conv.waiting_since or unit.now
    rank = queue_rank(conv.priority, since, ctx.config.routing.aging_step)
    await db.update_conversation(unit.conn, conv.id, waiting_since=since, queue_rank=rank)
    standing.moved(ctx, unit, conv)  # by priority it may go ahead of some who wait
    await schedule_overflow(ctx, unit, conv, since)
    if choice.rule == "waiting_for_last_agent" and conv.prefer_until is not None:
        await db.schedule_timer(
            unit.conn,
            f"widen:{conv.id}:{conv.prefer_until.isoformat()}",
            conv.id,
            "widen",
            conv.prefer_until,
            {},
            unit.now,
        )
    unit.decide(
        "queue",
        conversation_id=conv.id,
        queue=conv.queue,
        priority=LEVEL_NAMES[conv.priority],
        reason=choice.reason,
    )


async def drain(ctx: Routing, unit: Unit, agent_ids: Sequence[str] | None = None) -> None:
    """Give waiting conversations to agents with capacity, best queue position first.

    `agent_ids`: only capacity of these agents appeared (they came back, or their
    shift started); stop as soon as none of them has room left.
    """
    rows = await db.waiting(unit.conn, DRAIN_SCAN)  # in queue order
    if not rows:
        return
    board = await board_for(ctx, unit)
    for conv in rows:
        targets = [v for v in map(board.get, agent_ids or ()) if v is not None]
        if agent_ids is not None and not any(
            sum(v.capacity.values()) > sum(v.load.values()) for v in targets
        ):
            return
        need = need_of(ctx, conv)
        waiting_allowed = conv.prefer_until is not None and unit.now < conv.prefer_until
        choice = choose_agent(
            board,
            need,
            last_agent_id=conv.preferred_agent_id,
            wait_for_last_agent=waiting_allowed,
        )
        if not wanted(choice, agent_ids, targets, need):
            continue
        if await handed_back(unit, conv, choice):
            assert choice.agent_id is not None
            choice = choose_agent(
                board,
                need,
                last_agent_id=conv.preferred_agent_id,
                wait_for_last_agent=waiting_allowed,
                exclude=passing_over((), choice.agent_id),
            )
            if not wanted(choice, agent_ids, targets, need):
                continue
        if not await assign(ctx, unit, conv, choice):
            board = await read_board(ctx, unit)  # stale: another process changed that agent


def wanted(
    choice: Choice, agent_ids: Sequence[str] | None, targets: Sequence[AgentView], need: Need
) -> bool:
    """Whether a drain gives the conversation to the chosen agent: one was chosen and,
    when only some agents' capacity appeared, it is one of them or none of them fits."""
    if choice.agent_id is None:
        return False
    return (
        agent_ids is None or choice.agent_id in agent_ids or any(can_take(v, need) for v in targets)
    )
