"""`omnirouter conversations show ID|#REF`: one conversation as the store holds it.

Who the customer is, the transcript in order (time, side, who, text), and the
routing history: every assignment with the reason routing recorded for it,
the timers it ran on, and its incidents, merged in time order.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson

from router.ops.console import console, table, when
from router.store import Store, views

# Messages shown at most (the oldest first); a longer conversation says how many more.
MAX_MESSAGES = 1000


@dataclass(slots=True)
class Shown:
    conversation: Any
    customer: Any
    identities: list[Any]
    messages: list[Any]
    more_messages: bool
    history: list[tuple[datetime, str, str]] = field(default_factory=list)  # at, what, why


async def read(store: Store, wanted: str) -> Shown | None:
    async with store.transaction(readonly=True) as conn:
        conv = await views.find_conversation(conn, wanted)
        if conv is None:
            return None
        customer, identities = await views.customer_of(conn, conv.customer_id)
        messages = await views.messages_of(conn, conv.id, MAX_MESSAGES + 1)
        assigned = await views.assignments_of(conn, conv.id)
        incidents = await views.incidents_of(conn, conv.id)
        timers = await views.timers_of(conn, conv.id)
    shown = Shown(conv, customer, identities, messages[:MAX_MESSAGES], len(messages) > MAX_MESSAGES)
    history = shown.history
    for a in assigned:
        history.append((a.assigned_at, f"assigned to {a.agent_id}", explain(a.reason)))
        if a.accepted_at is not None:
            history.append((a.accepted_at, f"accepted by {a.agent_id}", ""))
        if a.ended_at is not None:
            history.append((a.ended_at, f"{a.agent_id} no longer owns it", a.end_reason or ""))
    for t in timers:
        if t.fired_at is not None:
            history.append((t.fired_at, f"timer {t.kind} fired", f"due {when(t.due_at)}"))
        elif t.cancelled_at is not None:
            history.append((t.cancelled_at, f"timer {t.kind} cancelled", f"due {when(t.due_at)}"))
        else:
            history.append((t.due_at, f"timer {t.kind} pending", "due then"))
    for i in incidents:
        history.append((i.created_at, f"incident: {i.kind}", i.cause))
    if conv.waiting_since is not None and conv.status == "open":
        queue = conv.queue or "the channel's line"
        history.append((conv.waiting_since, f"waiting in {queue}", "no agent took it yet"))
    history.sort(key=lambda item: item[0])
    return shown


def explain(reason: Any) -> str:
    """A recorded routing reason in one line: `rule: detail`, then the rest as key=value."""
    if not isinstance(reason, dict):
        return str(reason)
    rest = {k: v for k, v in reason.items() if k not in ("rule", "detail") and v not in (None, {})}
    head = ": ".join(str(reason[k]) for k in ("rule", "detail") if reason.get(k))
    tail = ", ".join(f"{k}={_compact(v)}" for k, v in rest.items())
    return "; ".join(part for part in (head, tail) if part)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def side(message: Any) -> str:
    """Who spoke: the customer, an agent (by name), or the router itself."""
    role = message.sender_role
    who = message.sender_name or message.sender_address
    return {"customer": f"customer {who}", "agent": f"agent {who}"}.get(role, f"{role} {who}")


def show(shown: Shown, *, as_json: bool, out: IO[str] | None = None) -> None:
    if as_json:
        (sys.stdout if out is None else out).write(_json(shown) + "\n")
        return
    c, con = shown.conversation, console(out)
    name = (shown.customer.display_name if shown.customer is not None else None) or "-"
    ids = ", ".join(f"{i.kind}:{i.value}" for i in shown.identities) or "-"
    con.print(f"conversation {c.id}  #{c.ref or '-'}")
    con.print(f"  channel {c.channel} ({c.channel_type}), thread {c.thread_key}")
    con.print(f"  customer {name} [{ids}]")
    con.print(
        f"  status {c.status}, owner {c.owner_agent_id or '-'}, queue {c.queue or '-'},"
        f" priority {c.priority}, first response due {when(c.sla_due_at)} UTC"
    )
    if c.complaint or c.tags:
        con.print(f"  complaint {'yes' if c.complaint else 'no'}, tags {', '.join(c.tags) or '-'}")
    transcript = table("WHEN (UTC)", "SIDE", "KIND", "TEXT", title="transcript")
    for m in shown.messages:
        text = m.text if not m.subject else f"[{m.subject}] {m.text}"
        transcript.add_row(when(m.received_at), side(m), m.kind, text)
    con.print(transcript)
    if shown.more_messages:
        con.print(f"(only the first {MAX_MESSAGES} messages are shown)")
    history = table("WHEN (UTC)", "WHAT", "WHY", title="routing history")
    for at, what, why in shown.history:
        history.add_row(when(at), what, why)
    con.print(history)


def _json(shown: Shown) -> str:
    c = shown.conversation
    obj = {
        "id": c.id,
        "ref": c.ref,
        "channel": c.channel,
        "channel_type": c.channel_type,
        "thread_key": c.thread_key,
        "status": c.status,
        "owner": c.owner_agent_id,
        "queue": c.queue,
        "priority": c.priority,
        "sla_due_at": c.sla_due_at,
        "customer": {
            "id": c.customer_id,
            "name": shown.customer.display_name if shown.customer is not None else None,
            "identities": [f"{i.kind}:{i.value}" for i in shown.identities],
        },
        "transcript": [
            {
                "at": m.received_at,
                "side": m.sender_role,
                "direction": m.direction,
                "from": m.sender_name or m.sender_address,
                "kind": m.kind,
                "subject": m.subject,
                "text": m.text,
            }
            for m in shown.messages
        ],
        "history": [{"at": at, "what": what, "why": why} for at, what, why in shown.history],
    }
    return orjson.dumps(obj).decode()
