"""Promises kept: SLA warnings and breaches, overflow, the wait for a previous agent, follow-ups.

Timers live in the store (each scheduled once, under a unique key) and come
back through the inbound topic as `timer` records, so they are processed in
order with the conversation's messages and survive restarts.

Every SLA instant (the warning, the breach, a queue's `overflow_after`) counts
open time of the channel's business hours, as the promised due time does: a
chat that arrives a minute before closing is warned about after opening, not
over the weekend. The other timers (the wait for a previous agent, assignment
timeouts, follow-ups) are about people at work now and count wall-clock time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from router.envelope import Envelope
from router.routing import calls, praise, promises, standing, updates
from router.routing.assign import release, route
from router.routing.context import Routing, Unit
from router.routing.delivery import deliver, to_customer
from router.routing.hours import add_business_time, business_time_between, next_open
from router.routing.overflow import OVERFLOW_TIMER
from router.routing.queueing import LEVEL_NAMES
from router.routing.templates import describe_moment, describe_wait, render, template_language
from router.store import routing as db

SLA_TIMERS = ("sla_warning", "sla_breach")
_SCORE = re.compile(r"^\s*([1-5])(\s*/\s*5)?\b")


def sla_due(
    ctx: Routing, channel: str, channel_type: str, priority: str, now: datetime
) -> datetime | None:
    targets = ctx.targets.get(channel_type)
    if targets is None:
        return None
    hours = ctx.hours_for(channel)
    return add_business_time(hours, now, targets.for_priority(priority))  # type: ignore[arg-type]


def sla_warning_at(ctx: Routing, channel: str, start: datetime, due: datetime) -> datetime:
    """When `sla.warning_at` of the open time between `start` and `due` has elapsed."""
    hours = ctx.hours_for(channel)
    target = business_time_between(hours, start, due)
    return add_business_time(hours, start, target * ctx.config.sla.warning_at)


def promise_fields(
    ctx: Routing, channel: str, language: str, now: datetime, due: datetime | None
) -> dict[str, str]:
    """The template fields that say when: the promised wait, its moment, our next opening.

    `language` is the one the template is written in (`template_language`): a
    Spanish customer whose template has only English reads no "mañana" in it.
    """
    tz, hours = ctx.tz_for(channel), ctx.hours_for(channel)
    return {
        "expected_response": describe_wait(due, now, language, tz=tz) if due else "",
        "due_at": describe_moment(due, now, language, tz=tz) if due else "",
        "opens_at": describe_moment(next_open(hours, now), now, language, tz=tz),
    }


def customer_text(
    ctx: Routing,
    conv: Any,
    customer_name: str,
    template: str,
    now: datetime,
    due: datetime | None,
) -> tuple[str, str]:
    """A customer template rendered for `conv` (its language, else the default): the
    language used and the text, with the name, reference and the fields that say when."""
    default = ctx.config.routing.default_language
    language = template_language(
        ctx.config.templates, template, conv.language or default, default_language=default
    )
    return render(
        ctx.config.templates,
        template,
        language,
        default_language=default,
        customer_name=customer_name,
        conversation_ref=conv.ref or "",
        **promise_fields(ctx, conv.channel, language, now, due),
    )


async def schedule_sla(ctx: Routing, unit: Unit, conv: Any, start: datetime, due: datetime) -> None:
    warning = sla_warning_at(ctx, conv.channel, start, due)
    base = f"{conv.id}:{start.isoformat()}"
    await db.schedule_timer(
        unit.conn,
        f"sla_warning:{base}",
        conv.id,
        "sla_warning",
        warning,
        {"due": due.isoformat()},
        unit.now,
    )
    await db.schedule_timer(
        unit.conn,
        f"sla_breach:{base}",
        conv.id,
        "sla_breach",
        due,
        {"due": due.isoformat()},
        unit.now,
    )


async def timer(ctx: Routing, unit: Unit, env: Envelope) -> None:
    kind = env.meta.get("timer")
    if kind == praise.DIGEST_TIMER:
        await praise.digest(ctx, unit, env.sent_at or unit.now)
        return
    conv = await db.conversation(unit.conn, env.conversation_id) if env.conversation_id else None
    if conv is None:
        unit.decide("ignore", reason={"detail": f"timer {kind} without conversation"})
        return
    if kind == "sla_warning":
        await sla_warning(ctx, unit, conv)
    elif kind == "sla_breach":
        if conv.first_response_at is None and conv.status == "open":
            await unit.incident(
                "sla_breach",
                conv.id,
                conv.customer_id,
                "first-response target missed",
                {
                    "due": env.meta.get("payload", {}).get("due"),
                    "owner": conv.owner_agent_id,
                    "queue": conv.queue,
                },
            )
            unit.decide(
                "breach",
                conversation_id=conv.id,
                agent=conv.owner_agent_id,
                queue=conv.queue,
                reason={"detail": "first-response target missed"},
            )
    elif kind == "widen":
        if conv.owner_agent_id is None and conv.waiting_since is not None:
            conv = await db.update_conversation(
                unit.conn, conv.id, preferred_agent_id=None, prefer_until=None
            )
            unit.decide(
                "widen",
                conversation_id=conv.id,
                reason={"detail": "previous agent still busy; any qualified agent"},
            )
            await route(ctx, unit, conv, widen=True)
    elif kind == OVERFLOW_TIMER:
        await overflow(ctx, unit, conv, env)
    elif kind == "assignment_timeout":
        await assignment_timeout(ctx, unit, conv, env)
    elif kind == "followup":
        await follow_up(ctx, unit, conv, env)
    elif kind == calls.RETRY_TIMER:
        await calls.retry_due(ctx, unit, conv, env)
    elif kind == standing.STANDING_TIMER:
        await standing.tell(ctx, unit, conv)
    elif kind == updates.UPDATE_TIMER:
        await updates.tell(ctx, unit, conv)
    elif kind in promises.TIMERS:
        await promises.timer(ctx, unit, conv, env)
    else:
        unit.decide("ignore", conversation_id=conv.id, reason={"detail": f"unknown timer {kind}"})


async def assignment_timeout(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> None:
    """The agent's tool could acknowledge and they did not: offer it to someone else."""
    agent_id = str(env.meta.get("payload", {}).get("agent", ""))
    active = await db.active_assignment(unit.conn, conv.id)
    if active is None or active.agent_id != agent_id or active.accepted_at is not None:
        return  # taken, replied, transferred or resolved meanwhile
    _, conv = await release(ctx, unit, conv, "not taken in time")
    timeout = ctx.config.routing.assignment_timeout.total_seconds()
    unit.decide(
        "reassign",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"detail": f"not taken within {timeout:g}s", "from": agent_id},
    )
    await route(ctx, unit, conv, widen=True, exclude={agent_id})


async def overflow(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> None:
    """The conversation waited its queue's `overflow_after`: on to the overflow queue."""
    payload = env.meta.get("payload", {})
    name = str(payload.get("queue", ""))
    since = conv.waiting_since
    if (
        conv.status != "open"
        or conv.owner_agent_id is not None
        or since is None
        or conv.queue != name
        or since.isoformat() != _utc_iso(payload.get("since"))
    ):
        return  # assigned, moved, resolved or waiting anew meanwhile
    queue = ctx.queues.get(name)
    if queue is None or queue.overflow is None or queue.overflow_after is None:
        unit.decide(
            "ignore",
            conversation_id=conv.id,
            queue=name,
            reason={"detail": f"queue {name} no longer overflows (config reloaded)"},
        )
        return
    standing.moved(ctx, unit, conv)  # it leaves this queue's line
    conv = await db.update_conversation(unit.conn, conv.id, queue=queue.overflow)
    minutes = queue.overflow_after.total_seconds() / 60
    unit.decide(
        "overflow",
        conversation_id=conv.id,
        queue=queue.overflow,
        priority=LEVEL_NAMES[conv.priority],
        reason={
            "rule": "overflow_after",
            "detail": f"waited {minutes:g} min of open time in {name}",
            "from": name,
            "to": queue.overflow,
            "waiting_since": since.isoformat(),
        },
    )
    await route(ctx, unit, conv, widen=True)


def _utc_iso(value: Any) -> str | None:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()
    except ValueError:
        return None


async def sla_warning(ctx: Routing, unit: Unit, conv: Any) -> None:
    if conv.first_response_at is not None or conv.status != "open":
        return
    sla = ctx.config.sla
    if sla.warning_template and sla.warning_template in ctx.config.templates:
        cust = await unit.customer(conv.customer_id)
        used, text = customer_text(
            ctx, conv, cust.display_name or "", sla.warning_template, unit.now, conv.sla_due_at
        )
        await to_customer(
            ctx,
            unit,
            conv,
            text,
            purpose="on_it",
            auto=True,
            template=sla.warning_template,
            language=used,
        )
    reason = {
        "rule": "sla_warning",
        "detail": "first-response target close",
        "due": conv.sla_due_at.isoformat() if conv.sla_due_at else None,
    }
    for sup in (a for a in ctx.config.agents if a.supervisor):
        await deliver(ctx, unit, conv, sup.id, "escalation", reason)
    queue = ctx.queues.get(conv.queue) if conv.queue else None
    rerouted = None
    # A queue with its own `overflow_after` overflows on that timer, not here.
    if (
        conv.owner_agent_id is None
        and queue is not None
        and queue.overflow
        and queue.overflow_after is None
    ):
        if conv.waiting_since is not None:
            standing.moved(ctx, unit, conv)  # it leaves this queue's line
        conv = await db.update_conversation(unit.conn, conv.id, queue=queue.overflow)
        rerouted = queue.overflow
    unit.decide(
        "escalate",
        conversation_id=conv.id,
        agent=conv.owner_agent_id,
        queue=conv.queue,
        reason={
            **reason,
            "overflow": rerouted,
            "supervisors": [a.id for a in ctx.config.agents if a.supervisor],
        },
    )
    if rerouted:
        await route(ctx, unit, conv, widen=True)


async def follow_up(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> None:
    template = ctx.config.sla.follow_up_template
    if conv.status != "resolved" or template is None or template not in ctx.config.templates:
        return
    agent = ctx.agents.get(str(env.meta.get("payload", {}).get("agent", "")))
    cust = await unit.customer(conv.customer_id)
    used, text = render(
        ctx.config.templates,
        template,
        conv.language or ctx.config.routing.default_language,
        default_language=ctx.config.routing.default_language,
        customer_name=cust.display_name or "",
        agent_name=agent.name if agent else "",
        conversation_ref=conv.ref or "",
    )
    meta = dict(conv.thread_meta or {})
    meta["awaiting_satisfaction"] = True
    conv = await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
    await to_customer(
        ctx, unit, conv, text, purpose="followup", auto=True, template=template, language=used
    )
    unit.decide("followup", conversation_id=conv.id, reason={"template": template})


async def satisfaction_answer(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> bool:
    meta = dict(conv.thread_meta or {})
    if not meta.pop("awaiting_satisfaction", False):
        return False
    await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
    if satisfied(ctx, env.text):
        await db.update_conversation(unit.conn, conv.id, status="closed")
        unit.decide("close", conversation_id=conv.id, reason={"detail": "customer satisfied"})
        handler = praise.handler_of(conv)
        if handler is not None:  # a good answer is praise for who resolved it
            await praise.relay(ctx, unit, conv, handler, env.text, "answer")
        return True
    sla = ctx.config.sla
    skill = sla.senior_skill or ctx.config.routing.complaints.skill
    skills = dict(conv.skills or {})
    skills[skill] = max(sla.senior_level, skills.get(skill, 0))
    await unit.incident(
        "bad_satisfaction",
        conv.id,
        conv.customer_id,
        "customer not satisfied after resolution",
        {"answer": env.text[:500]},
    )
    conv = await db.update_conversation(
        unit.conn,
        conv.id,
        status="open",
        resolved_at=None,
        skills=skills,
        priority=max(conv.priority, 2),
        preferred_agent_id=None,
        prefer_until=None,
    )
    unit.decide(
        "reopen",
        conversation_id=conv.id,
        priority=LEVEL_NAMES[conv.priority],
        reason={"detail": "bad satisfaction answer; senior agent", "skills": skills},
    )
    await route(ctx, unit, conv, widen=True)
    return True


def satisfied(ctx: Routing, text: str) -> bool:
    score = _SCORE.match(text)
    if score:
        return int(score.group(1)) >= 4
    folded = text.casefold()
    return any(
        re.search(rf"\b{re.escape(word.casefold())}\b", folded)
        for words in ctx.config.sla.satisfied_keywords.values()
        for word in words
    )
