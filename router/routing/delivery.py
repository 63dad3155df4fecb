"""What the router sends: deliveries to agents, with full context, and messages to customers.

A delivery carries everything the agent needs so they never ask the customer
something the system knew: who the customer is and all their identities, the
transcript, their other recent conversations on every channel, tags, the SLA
due time and why this agent got it. Messages to customers always go out on
the conversation's own channel and thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from router.agenttext import Reader, promises_owed, why_you
from router.config import AgentConfig
from router.envelope import (
    Attachment,
    Automated,
    Delivery,
    DeliveryAgent,
    DeliverySink,
    Envelope,
    Sender,
    Signal,
    Standing,
    encode,
    envelope_id,
)
from router.routing import tokens
from router.routing.context import Routing, Unit
from router.routing.identity import PHONE
from router.routing.promised import entry as promise_entry
from router.routing.queueing import LEVEL_NAMES
from router.store import routing as db

# A delivery is bounded by design, whatever the conversation holds: the latest
# messages, each text cut at TEXT_LIMIT characters (the full texts stay in the
# store, referenced by conversation and message id), and the whole record kept
# under a share of the bus's max_record_bytes by dropping the oldest entries.
TRANSCRIPT_WINDOW = 20
TEXT_LIMIT = 8_000
SUBJECT_LIMIT = 300
NOTE_LIMIT = 2_000
ATTACHMENTS_LIMIT = 20
IDENTITIES_LIMIT = 50
EXTRACT_LIMIT = 160
PROMISES_LIMIT = 20
# The summary (the text shown by email and Telegram) repeats no full text: a
# short preview of the latest messages; the full window is in the context.
PREVIEW_MESSAGES = 10
PREVIEW_CHARS = 280
# Where a conversation's thread facts keep the latest reply context.
REPLY_CONTEXT = "reply_context"
# The conversation's callback state in `thread_meta` (router.routing.calls).
CALLBACK = "callback"
# The conversation's "customer not reached here" fact in `thread_meta`: set when a
# message to the customer failed for good (blocked bot, bounce), cleared when the
# customer writes on it again.
UNREACHABLE = "unreachable"
# Share of max_record_bytes an output's content may use (headroom for the envelope).
RECORD_SHARE = 0.8


def output_budget(ctx: Routing) -> int:
    """Bytes a delivery, or an agent's reply text, may take on the bus."""
    return int(ctx.config.bus.max_record_bytes * RECORD_SHARE)


def _cut(text: str | None, limit: int) -> tuple[str, bool]:
    text = text or ""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def shown(row: Any) -> bool:
    """Whether a stored message is in the transcript. Earlier versions also stored an
    agent's reply as it came in (the reply sent to the customer is the one shown) and
    commands without a text (now stored as what they did): those are left out."""
    e = row.envelope
    if row.kind == "reply" and row.direction == "in":
        return False
    return not (row.kind == "command" and not e.get("text"))


def transcript_entry(row: Any) -> dict[str, Any]:
    """One message as the agent sees it; a long text is cut and says so."""
    e = row.envelope
    text, cut = _cut(e.get("text"), TEXT_LIMIT)
    subject, _ = _cut(e.get("subject"), SUBJECT_LIMIT)
    attachments = list(e.get("attachments") or [])
    entry = {
        "id": row.id,
        "kind": row.kind,
        "direction": row.direction,
        "from": e.get("sender", {}),
        "at": e.get("received_at"),
        "subject": subject or None,
        "text": text,
        "attachments": attachments[:ATTACHMENTS_LIMIT],
    }
    if cut:
        entry["truncated"] = {"length": len(e.get("text") or ""), "shown": TEXT_LIMIT}
    if len(attachments) > ATTACHMENTS_LIMIT:
        entry["attachments_omitted"] = len(attachments) - ATTACHMENTS_LIMIT
    return entry


async def deliver(
    ctx: Routing,
    unit: Unit,
    conv: Any,
    agent_id: str,
    event: str,
    reason: Mapping[str, Any],
    note: str | None = None,
) -> bool:
    """Write a delivery to `agent_id`'s tool; False (and a decision saying why) when the
    agent is no longer configured: the caller routes the conversation again."""
    agent = ctx.agents.get(agent_id)
    if agent is None:
        unit.decide(
            "undeliverable",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"detail": f"agent {agent_id} is no longer configured", "event": event},
        )
        return False
    conn = unit.conn
    since = unit.now - timedelta(days=ctx.config.routing.context_days)
    created = unit.created.get(conv.customer_id)
    stored = await db.delivery_reads(
        conn,
        conv.customer_id,
        conv.id,
        since=since,
        transcript_limit=TRANSCRIPT_WINDOW,
        # Promises are made on a delivered conversation, with the token its delivery
        # carries: one opened in this unit, not yet committed, has none.
        promises_limit=0 if conv.id in unit.opened else PROMISES_LIMIT,
        known=created.known(conv.id) if created is not None else None,
    )
    cust, idents, recent = stored.customer, stored.identities, stored.recent
    others = []
    extracts = await db.last_texts(conn, [other.id for other in recent])
    for other in recent:
        others.append(
            {
                "conversation_id": other.id,
                "ref": other.ref,
                "channel": other.channel,
                "channel_type": other.channel_type,
                "status": other.status,
                "owner": other.owner_agent_id,
                "updated_at": other.updated_at.isoformat(),
                "extract": extracts.get(other.id, "")[:EXTRACT_LIMIT],
            }
        )
    transcript = [transcript_entry(row) for row in stored.transcript if shown(row)]
    total = await db.message_count(conn, conv.id) if len(transcript) == TRANSCRIPT_WINDOW else 0
    suggestions = [
        {
            "identity": s.kind,
            "current_customer": s.current_customer_id,
            "proposed_customer": s.proposed_customer_id,
            "source": s.source,
        }
        for s in stored.suggestions
    ]
    context: dict[str, Any] = {
        "customer": {
            "id": cust.id,
            "name": cust.display_name,
            "tier": cust.tier,
            "tags": list(cust.tags or ()),
            "language": cust.language,
            "identities": [{"kind": i.kind, "value": i.value} for i in idents][:IDENTITIES_LIMIT],
            "link_suggestions": suggestions[:IDENTITIES_LIMIT],
        },
        "conversation": {
            "id": conv.id,
            "ref": conv.ref,
            "channel": conv.channel,
            "channel_type": conv.channel_type,
            "status": conv.status,
            "priority": LEVEL_NAMES[conv.priority],
            "queue": conv.queue,
            "tags": list(conv.tags or ()),
            "complaint": conv.complaint,
            "language": conv.language,
            "sla_due_at": conv.sla_due_at.isoformat() if conv.sla_due_at else None,
            "subject": _cut((conv.thread_meta or {}).get("subject"), SUBJECT_LIMIT)[0] or None,
            "callback": _callback(conv, [i.value for i in idents if i.kind == PHONE]),
            "unreachable": (conv.thread_meta or {}).get(UNREACHABLE),
        },
        "transcript": transcript,
        # How much of the conversation the window shows; the rest is in the store.
        "transcript_window": {
            "shown": len(transcript),
            "total": max(total, len(transcript)),
            "conversation_id": conv.id,
        },
        "other_conversations": others,
        # What agents promised here (router.routing.promises), whoever owns it now.
        "promises": [promise_entry(p, conv.owner_agent_id) for p in stored.promises],
    }
    note = _cut(note, NOTE_LIMIT)[0] if note else None
    sink = agent.sink
    sink_name = sink.channel or sink.type
    subject = f"[#{conv.ref}] {context['conversation']['subject'] or 'Conversation'}"
    budget = output_budget(ctx)
    timezone = agent_timezone(ctx, agent)
    reader = Reader.of(agent.languages[0], timezone)
    while True:
        env = Envelope(
            id=envelope_id(f"agent:{agent_id}", f"{unit.input_id}:{event}:{unit.outputs}"),
            kind="message",
            direction="out",
            channel=sink_name,
            channel_type=sink.type,
            thread_key=conv.id,
            conversation_id=conv.id,
            sender=Sender(address="omnirouter", name="omnirouter", role="system"),
            received_at=unit.now,
            subject=subject,
            text=summary(
                context, reason, event, note, reader=reader, now=unit.now, agent_id=agent.id
            ),
            delivery=Delivery(
                event=event,
                agent=DeliveryAgent(
                    id=agent.id, name=agent.name, timezone=timezone, language=agent.languages[0]
                ),
                sink=DeliverySink(type=sink.type, address=sink.address),
                token=tokens.issue(ctx.signing_key, conv.id, agent.id),
                reason=dict(reason),
                note=note,
                sla_due=conv.sla_due_at,
                context=context,
            ),
        )
        value = encode(env)
        if len(value) <= budget or not _shrink(context):
            break
    unit.outputs += 1
    await db.send_outbox(conn, ctx.topics.agent(sink_name), env.bus_key(), value, unit.now)
    return True


async def notice(
    ctx: Routing,
    unit: Unit,
    agent: AgentConfig,
    event: str,
    text: str,
    reason: Mapping[str, Any],
    *,
    in_reply_to: str | None = None,
) -> None:
    """A notice to an agent's tool about no conversation of theirs (a refused input, the
    supervisors' digest): its text in their language, titled by `event`."""
    timezone = agent_timezone(ctx, agent)
    reader = Reader.of(agent.languages[0], timezone)
    env = Envelope(
        id=envelope_id(f"agent:{agent.id}", f"{unit.input_id}:{event}"),
        kind="message",
        direction="out",
        channel=agent.sink.channel or agent.sink.type,
        channel_type=agent.sink.type,
        thread_key=f"notice:{agent.id}",
        sender=Sender(address="omnirouter", name="omnirouter", role="system"),
        received_at=unit.now,
        subject=reader.event(event),
        text=text,
        delivery=Delivery(
            event=event,
            agent=DeliveryAgent(
                id=agent.id, name=agent.name, timezone=timezone, language=agent.languages[0]
            ),
            sink=DeliverySink(type=agent.sink.type, address=agent.sink.address),
            reason=dict(reason),
            in_reply_to=in_reply_to,
        ),
    )
    await db.send_outbox(
        unit.conn,
        ctx.topics.agent(agent.sink.channel or agent.sink.type),
        env.bus_key(),
        encode(env),
        unit.now,
    )


def agent_timezone(ctx: Routing, agent: AgentConfig) -> str | None:
    """The agent's time zone: their own, else their schedule's."""
    hours = ctx.config.business_hours.get(agent.schedule) if agent.schedule else None
    return agent.timezone or (hours.timezone if hours is not None else None)


def _shrink(context: dict[str, Any]) -> bool:
    """Make room: drop the oldest transcript entry, then the other conversations.
    False when nothing is left to drop (the outbox then dead-letters an oversize record)."""
    if len(context["transcript"]) > 1:
        context["transcript"].pop(0)
        context["transcript_window"]["shown"] -= 1
        return True
    if context["other_conversations"]:
        context["other_conversations"].clear()
        return True
    return False


async def to_customer(
    ctx: Routing,
    unit: Unit,
    conv: Any,
    text: str,
    *,
    purpose: str,
    auto: bool,
    template: str | None = None,
    language: str | None = None,
    agent: AgentConfig | None = None,
    standing: Standing | None = None,
    signal: Signal | None = None,
    at: datetime | None = None,
    record: bool = True,
    attachments: Sequence[Attachment] = (),
) -> tuple[Callable[[], int], Envelope]:
    """Write a message to the customer on the conversation's own channel and thread (with
    the agent's files, by reference: the channel sends what it can); its outbox row (its
    id when asked: `db.send_outbox`) and envelope. `record`: kept in the transcript (a
    standing update is not). `at`: the moment it speaks of (default: now; a `seen` is as
    of the agent's word)."""
    meta = dict(conv.thread_meta or {})
    subject = meta.get("subject") or ""
    env = Envelope(
        id=envelope_id(conv.channel, f"out:{unit.input_id}:{purpose}:{unit.outputs}"),
        kind="reply",
        direction="out",
        channel=conv.channel,
        channel_type=conv.channel_type,
        thread_key=conv.thread_key,
        conversation_id=conv.id,
        sender=Sender(
            address=agent.id if agent else "omnirouter",
            name=agent.name if agent else None,
            role="agent" if agent else "system",
        ),
        received_at=at or unit.now,
        subject=subject or None,
        text=text,
        attachments=list(attachments),
        automated=Automated(auto=True) if auto else None,
        standing=standing,
        signal=signal,
        # The channel threads the reply from it (email: To, In-Reply-To, References).
        reply_context=meta.get(REPLY_CONTEXT) or {},
        meta={
            "conversation_ref": conv.ref,
            "purpose": purpose,
            "template": template,
            "language": language,
        },
    )
    unit.outputs += 1
    if record:
        await ctx.store.add_message(env, conn=unit.conn)
    row = await db.send_outbox(
        unit.conn, ctx.topics.outbound(conv.channel), env.bus_key(), encode(env), unit.now
    )
    return row, env


def specialist_text(language: str | None) -> str:
    if language == "es":
        return (
            "Un especialista de nuestro equipo continúa con tu caso; ya tiene toda la conversación."
        )
    return "A specialist on our team is taking over your case, with the whole conversation in hand."


def _callback(conv: Any, numbers: list[str]) -> dict[str, Any] | None:
    """An open callback: how many calls it holds, tries made, and the number to call as
    a `tel:` link (the conversation's own number first)."""
    state = (conv.thread_meta or {}).get(CALLBACK) or {}
    if not state.get("open") or conv.status != "open":
        return None
    numbers = sorted(numbers, key=lambda n: n != conv.thread_key)
    return {
        "calls": state.get("calls", 1),
        "attempts": state.get("attempts", 0),
        "since": state.get("since"),
        "tel": f"tel:{numbers[0]}" if numbers else None,
    }


def summary(
    context: Mapping[str, Any],
    reason: Mapping[str, Any],
    event: str,
    note: str | None,
    *,
    reader: Reader,
    now: datetime,
    agent_id: str,
) -> str:
    """The delivery as plain text, for sinks that show text (email, Telegram, a webhook's
    `text`): in the agent's language, times in their zone (never a raw timestamp)."""
    c, conv = context["customer"], context["conversation"]
    w = reader.word
    head = w("conversation_on", ref=conv["ref"], channel=conv["channel"])
    who = f"{w('customer')}: {c['name'] or w('no_name')} — {w('tier', tier=c['tier'])}"
    if c["tags"]:
        who += ", " + w("tags", tags=", ".join(c["tags"]))
    priority = f"{w('priority')}: {conv['priority']}"
    if conv["complaint"]:
        priority += f" — {w('complaint')}"
    if conv["sla_due_at"]:
        due = datetime.fromisoformat(conv["sla_due_at"])
        priority += f" — {reader.answer_by(due, now)}"
    why = why_you(reader, reason, now, agent_id=agent_id, others=context["other_conversations"])
    lines = [
        f"{reader.event(event)}: {head}",
        who,
        f"{w('identities')}: " + ", ".join(f"{i['kind']} {i['value']}" for i in c["identities"]),
        priority,
        f"{w('why_you')}: {why}",
    ]
    callback = conv.get("callback")
    if callback:
        tel = callback["tel"] or w("no_number")
        lines.append(
            w("call_back", tel=tel, calls=callback["calls"], attempts=callback["attempts"])
        )
    unreachable = conv.get("unreachable")
    if unreachable:
        since = reader.moment(unreachable["since"], now)
        lines.append(
            w("not_reached", channel=conv["channel"], when=since, detail=unreachable["detail"])
        )
    lines.extend(promises_owed(reader, context.get("promises"), now))
    if note:
        lines.append(f"{w('note')}: {note}")
    lines.append("")
    window = context["transcript_window"]
    shown = context["transcript"][-PREVIEW_MESSAGES:]
    lines.append(w("latest", shown=len(shown), total=window["total"]))
    for m in shown:
        sender = (m["from"] or {}).get("name") or (m["from"] or {}).get("role", "")
        preview = " ".join(m["text"].split())
        if len(preview) > PREVIEW_CHARS:
            preview = preview[: PREVIEW_CHARS - 1] + "…"
        lines.append(f"  [{reader.moment(m['at'], now)}] {sender}: {preview}")
    if context["other_conversations"]:
        lines.append("")
        lines.append(f"{w('others')}:")
        for o in context["other_conversations"]:
            lines.append(f"  #{o['ref']} {o['channel']} ({o['status']}): {o['extract']}")
    return "\n".join(lines)
