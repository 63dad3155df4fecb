"""Answering a customer also at the address they gave and agreed to (an envelope's
`answer_at`), on the channel their conversation's channel names for it (a web chat's
`answer_by_email`), threaded; and the transcript they ask for, sent the same way.

- Consent: only an `answer_at` the customer's channel wrote (after they agreed) is
  kept, in the conversation's `thread_meta.answer_at`; nothing goes there without it.
- Threading: the first message starts a thread on that channel (its type's
  `start_thread`, from a random seed: nobody can guess the thread), kept with the
  consent. The thread key is recorded (a router checkpoint) as an alias of the
  conversation, so the customer's answer in that thread joins the same conversation
  when it comes from that very address; its reply context threads the next message.
- What goes there: agents' replies (also, not instead: the router cannot tell whether
  the customer still reads the chat, and an answer seen twice beats one never seen),
  and the transcript on request. Acknowledgements and notices stay on the own channel.
- Not kept twice: the copy is not stored (the reply is, once); the transcript is not
  stored either. The address never goes to a log or a decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from router.config import AgentConfig
from router.connector import ConnectorSpec
from router.envelope import Attachment, Envelope, Sender, StatedIdentity, encode, envelope_id
from router.routing.context import Routing, Unit
from router.routing.delivery import output_budget, to_customer
from router.routing.identity import EMAIL, IdentityError
from router.store import routing as db

ANSWER_AT = "answer_at"  # the conversation's consent and thread in `thread_meta`
OWNER = "router"  # the router's own checkpoints (engine.CONSUMER)
TRANSCRIPT_MESSAGES = 1000  # the latest; the text is cut to the bus budget anyway

WORDS = {
    "en": {
        "subject": "Your conversation with us",
        "transcript": "Transcript of your conversation",
        "you": "You",
        "us": "Support",
        "files": "files",
        "cut": "(earlier messages left out)",
        "sent": "We have emailed the transcript of this chat to {address}.",
        "no_address": "We cannot email the transcript: give your email and tick"
        " “answer me by email” first.",
        "no_channel": "We cannot email transcripts from this chat.",
    },
    "es": {
        "subject": "Tu conversación con nosotros",
        "transcript": "Transcripción de tu conversación",
        "you": "Tú",
        "us": "Soporte",
        "files": "archivos",
        "cut": "(mensajes anteriores omitidos)",
        "sent": "Te hemos enviado por email la transcripción de este chat a {address}.",
        "no_address": "No podemos enviarte la transcripción: indica tu email y marca"
        " «respondedme por email» primero.",
        "no_channel": "No podemos enviar transcripciones desde este chat.",
    },
}


def _words(conv: Any) -> dict[str, str]:
    return WORDS.get(conv.language or "", WORDS["en"])


def answer_channel(ctx: Routing, channel: str) -> tuple[str, ConnectorSpec, Any] | None:
    """The channel that answers `channel`'s customers at their address: its name, type
    spec and settings; None when none is configured, or it is gone, disabled or cannot
    write first (the config check refuses those; a reload may have changed them)."""
    ch = ctx.channels.get(channel)
    spec = ctx.registry.get(ch.type) if ch is not None else None
    if ch is None or spec is None or spec.answer_channel is None or ch.settings is None:
        return None
    name = spec.answer_channel(ch.settings)
    target = ctx.channels.get(name) if name is not None else None
    kind = ctx.registry.get(target.type) if target is not None else None
    if target is None or not target.enabled or kind is None or target.settings is None:
        return None
    if kind.start_thread is None or kind.sender_kind != EMAIL:
        return None
    return target.name, kind, target.settings


def agreed(meta: dict[str, Any], stated: StatedIdentity) -> None:
    """Keep the customer's consent (`answer_at`) in the thread facts; a new address
    starts a new thread."""
    state = dict(meta.get(ANSWER_AT) or {})
    if state.get("kind") != stated.kind or state.get("value") != stated.value:
        state = {"kind": stated.kind, "value": stated.value}
    meta[ANSWER_AT] = state


def answered(meta: dict[str, Any], env: Envelope) -> None:
    """The customer answered in the thread: the next message replies to theirs."""
    state = dict(meta.get(ANSWER_AT) or {})
    if env.reply_context:
        state["reply_context"] = dict(env.reply_context)
    meta[ANSWER_AT] = state


def _alias(channel: str, thread_key: str) -> str:
    return f"thread:{len(channel)}:{channel}{thread_key}"


def alias_of(env: Envelope) -> tuple[str, str]:
    """The checkpoint (name, key) that names the conversation whose answer thread `env`'s
    thread is, if it is one."""
    return OWNER, _alias(env.channel, env.thread_key)


async def joined(ctx: Routing, unit: Unit, env: Envelope, conv_id: str | None) -> Any | None:
    """The conversation whose answer thread `env` is in (None: none), when it comes from
    the address the customer agreed to: a stranger who has the thread joins nothing.
    `conv_id`: the conversation the checkpoint `alias_of(env)` names."""
    conv = await db.conversation(unit.conn, conv_id) if conv_id else None
    if conv is None:
        return None
    state = (conv.thread_meta or {}).get(ANSWER_AT) or {}
    if state.get("channel") != env.channel or state.get("thread_key") != env.thread_key:
        return None
    try:
        sender = ctx.sender_identity(env)
        own = ctx.normalize(str(state.get("kind")), str(state.get("value")), env.channel)
    except IdentityError:
        return None
    if sender != own:
        unit.decide(
            "not_joined",
            conversation_id=conv.id,
            reason={"detail": "answer in the thread from another address: a new conversation"},
        )
        return None
    unit.decide("joined", conversation_id=conv.id, reason={"channel": env.channel})
    return conv


async def _thread(
    ctx: Routing, unit: Unit, conv: Any, target: tuple[str, ConnectorSpec, Any]
) -> dict[str, Any]:
    """The conversation's answer thread on `target`, started (and its alias kept) the
    first time."""
    name, spec, settings = target
    meta = dict(conv.thread_meta or {})
    state = dict(meta.get(ANSWER_AT) or {})
    if state.get("channel") == name and state.get("thread_key"):
        return state
    assert spec.start_thread is not None
    # An id of the store's draw: random in the daemon, seeded in `simulate` (same input,
    # same output).
    key, context = spec.start_thread(settings, str(state["value"]), db.new_id())
    state.update(channel=name, thread_key=key, reply_context=context)
    meta[ANSWER_AT] = state
    await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
    await ctx.store.set_checkpoint(OWNER, _alias(name, key), conv.id, conn=unit.conn)
    return state


async def _send(
    ctx: Routing,
    unit: Unit,
    conv: Any,
    target: tuple[str, ConnectorSpec, Any],
    text: str,
    *,
    purpose: str,
    subject: str,
    agent: AgentConfig | None = None,
    attachments: Sequence[Attachment] = (),
) -> None:
    state = await _thread(ctx, unit, conv, target)
    name, spec, _ = target
    env = Envelope(
        id=envelope_id(name, f"out:{unit.input_id}:{purpose}:{unit.outputs}"),
        kind="reply",
        direction="out",
        channel=name,
        channel_type=spec.type,
        thread_key=state["thread_key"],
        conversation_id=conv.id,
        sender=Sender(
            address=agent.id if agent else "omnirouter",
            name=agent.name if agent else None,
            role="agent" if agent else "system",
        ),
        received_at=unit.now,
        subject=subject,
        text=text,
        attachments=list(attachments),
        reply_context=state.get("reply_context") or {},
        meta={"conversation_ref": conv.ref, "purpose": purpose, "language": conv.language},
    )
    unit.outputs += 1
    await db.send_outbox(unit.conn, ctx.topics.outbound(name), env.bus_key(), encode(env), unit.now)
    unit.decide(ANSWER_AT, conversation_id=conv.id, reason={"channel": name, "purpose": purpose})


async def copy_reply(
    ctx: Routing,
    unit: Unit,
    conv: Any,
    text: str,
    agent: AgentConfig,
    attachments: Sequence[Attachment],
) -> None:
    """An agent's reply, also to the address the customer agreed to (when they did)."""
    conv = await db.reload(unit.conn, conv.id)
    if not (conv.thread_meta or {}).get(ANSWER_AT):
        return
    target = answer_channel(ctx, conv.channel)
    if target is None:
        unit.decide(
            "ignore",
            conversation_id=conv.id,
            reason={"detail": f"no channel answers {conv.channel}'s customers at their address"},
        )
        return
    subject = (conv.thread_meta or {}).get("subject") or _words(conv)["subject"]
    await _send(
        ctx,
        unit,
        conv,
        target,
        text,
        purpose="reply",
        subject=subject,
        agent=agent,
        attachments=attachments,
    )


async def request(ctx: Routing, unit: Unit, env: Envelope) -> None:
    """A service the customer asks of the router (`env.request`): the transcript of their
    conversation, sent to the address they agreed to; told in their chat either way."""
    conv = await db.conversation_by_thread(unit.conn, env.channel, env.thread_key)
    if conv is None:
        unit.decide("ignore", reason={"detail": f"{env.request}: no conversation yet"})
        return
    words = _words(conv)
    target = answer_channel(ctx, conv.channel)
    stated = env.answer_at if env.answer_at is not None and env.answer_at.kind == EMAIL else None
    if stated is None or target is None:
        why = "no_address" if stated is None else "no_channel"
        unit.decide("refuse", conversation_id=conv.id, reason={"request": env.request, "why": why})
        await to_customer(
            ctx, unit, conv, words[why], purpose="transcript_refused", auto=True, record=False
        )
        return
    meta = dict(conv.thread_meta or {})
    agreed(meta, stated)
    conv = await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
    rows = await db.transcript(unit.conn, conv.id, TRANSCRIPT_MESSAGES)
    text = transcript_text(rows, ctx.tz_for(conv.channel), words, output_budget(ctx) // 2)
    await _send(ctx, unit, conv, target, text, purpose="transcript", subject=words["transcript"])
    said = words["sent"].format(address=stated.value)
    await to_customer(ctx, unit, conv, said, purpose="transcript_sent", auto=True, record=False)


def _said(row: Any) -> bool:
    """What the customer and the agents said to each other: never a note, a command or
    the router's own words."""
    e = row.envelope
    role = (e.get("sender") or {}).get("role")
    if row.kind == "message" and row.direction == "in":
        return role == "customer"
    return row.kind == "reply" and row.direction == "out" and role == "agent"


def transcript_text(
    rows: Sequence[Any], timezone: str | None, words: dict[str, str], budget: int
) -> str:
    """The conversation in order, both sides, each line with its time (the channel's
    time zone); the oldest lines go first when it would not fit `budget` bytes."""
    tz = ZoneInfo(timezone) if timezone else UTC
    lines = []
    for row in rows:
        if not _said(row):
            continue
        e = row.envelope
        sender = e.get("sender") or {}
        who = words["you"] if sender.get("role") == "customer" else sender.get("name")
        at = datetime.fromisoformat(e["received_at"]).astimezone(tz)
        text = (e.get("text") or "").strip()
        names = [a.get("name", "") for a in e.get("attachments") or []]
        if names:
            text = f"{text}\n[{words['files']}: {', '.join(names)}]".strip()
        lines.append(f"[{at:%Y-%m-%d %H:%M %Z}] {who or words['us']}:\n{text}\n")
    # Bytes as the bus carries them (escapes included), counted once per line.
    sizes = [len(orjson.dumps(line)) for line in lines]
    total, first = sum(sizes), 0
    while first < len(lines) and total > budget:
        total -= sizes[first]
        first += 1
    kept = lines[first:]
    return "\n".join([words["cut"], *kept] if first else kept)
