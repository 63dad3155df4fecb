"""Envelopes, written for Telegram: pure functions giving sendMessage's parameters.

A reply to a customer goes to the chat its reply context names (else its thread
key, the chat id), cut into Telegram's 4096-character messages, then its files
(photos shown inline, anything else as a document). A delivery to an
agent is a compact context card with inline buttons; the card's message id is
remembered with the delivery's token, so a Telegram reply to the card answers
the customer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from router.agenttext import Reader, promises_owed, why_you
from router.envelope import Attachment, Delivery, Envelope

MAX_TEXT = 4096  # Telegram's limit for one message's text
TRANSCRIPT_LINES = 10
LINE_CHARS = 300

# callback_data of the card's buttons (at most 64 bytes each) -> the agent command.
BUTTONS = {
    "accept": "Accept",
    "resolve": "Resolve",
    "transfer": "Transfer",
    "away": "Away",
    "available": "Available",
}
PRESENCE = frozenset({"away", "available"})  # commands that need no conversation


class NoChat(ValueError):
    """The envelope names no chat to send to."""


@dataclass(frozen=True, slots=True)
class Target:
    chat_id: int
    reply_to: int | None  # the customer's message to answer as a Telegram reply


def target(envelope: Envelope) -> Target:
    """Where a reply to a customer goes: the chat and message its reply context names."""
    ctx = envelope.reply_context
    chat = ctx.get("chat_id", envelope.thread_key)
    try:
        chat_id = int(chat)
    except (TypeError, ValueError):
        raise NoChat(
            f"no chat id in the reply context or thread key ({str(chat)[:40]!r})"
        ) from None
    reply_to = ctx.get("message_id")
    return Target(chat_id, reply_to if isinstance(reply_to, int) else None)


UPLOAD_LIMIT = 50 * 1024 * 1024  # the Bot API takes documents up to 50 MB
PHOTO_LIMIT = 10 * 1024 * 1024  # and photos up to 10 MB
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


def upload_as(attachment: Attachment) -> str:
    """How a file goes to a chat: `photo` (shown inline) or `document` (as it is)."""
    is_photo = attachment.content_type in PHOTO_TYPES and attachment.size <= PHOTO_LIMIT
    return "photo" if is_photo else "document"


def too_large(attachments: Sequence[Attachment]) -> str | None:
    """Why the files cannot go by the Bot API (one over 50 MB), or None."""
    big = [a.name for a in attachments if a.size > UPLOAD_LIMIT]
    if not big:
        return None
    return f"Telegram takes files up to 50 MB; too large: {', '.join(big)[:200]}"


def chunks(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in messages of at most `limit` characters, cut at a line break where one is near."""
    text = text.strip()
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        cut = cut if cut > 0 else limit
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out


def keyboard() -> dict[str, Any]:
    """The card's inline keyboard: Accept / Resolve, Transfer, Away / Available."""
    rows = [["accept", "resolve"], ["transfer"], ["away", "available"]]
    return {
        "inline_keyboard": [
            [{"text": BUTTONS[data], "callback_data": data} for data in row] for row in rows
        ]
    }


# A queue button's callback_data is QUEUE_PREFIX and the queue's name: a name is at
# most 63 characters of [a-z0-9_-], so it fits Telegram's 64 bytes and is never a
# button of the card's own.
QUEUE_PREFIX = ">"
BACK = "back"
QUEUES_PER_ROW = 2
MAX_QUEUE_BUTTONS = 98  # Telegram takes 100 buttons per keyboard; one is Back


def queue_keyboard(queues: Sequence[str]) -> dict[str, Any]:
    """The transfer picker that replaces the card's keyboard: a button per queue, then Back."""
    shown = list(queues)[:MAX_QUEUE_BUTTONS]
    buttons = [{"text": q, "callback_data": QUEUE_PREFIX + q} for q in shown]
    rows = [buttons[i : i + QUEUES_PER_ROW] for i in range(0, len(buttons), QUEUES_PER_ROW)]
    return {"inline_keyboard": [*rows, [{"text": "« Back", "callback_data": BACK}]]}


def card(envelope: Envelope, delivery: Delivery, now: datetime) -> str:
    """The compact context card: what happened, the customer and all their identities,
    when the answer is due, why this agent, the customer's other conversations, the
    latest messages. In the agent's language, the due time in their time zone (UTC,
    said so, when the delivery names none) and relative to now."""
    ctx: Mapping[str, Any] = delivery.context or {}
    customer = ctx.get("customer") or {}
    conv = ctx.get("conversation") or {}
    reader = Reader.of(delivery.agent.language, delivery.agent.timezone)
    w = reader.word
    channel = conv.get("channel", envelope.channel)
    head = w(
        "card_head", event=reader.event(delivery.event), ref=conv.get("ref", "?"), channel=channel
    )
    if conv.get("priority"):
        head += f" ({conv['priority']}{', ' + w('complaint') if conv.get('complaint') else ''})"
    lines = [head]
    if customer:
        tags = customer.get("tags") or []
        lines.append(
            f"{w('customer')}: {customer.get('name') or w('no_name')}"
            + (", " + w("tier", tier=customer["tier"]) if customer.get("tier") else "")
            + (", " + w("tags", tags=", ".join(tags)) if tags else "")
        )
        identities = customer.get("identities") or []
        if identities:
            lines.append(
                f"{w('identities')}: "
                + ", ".join(f"{i.get('kind')} {i.get('value')}" for i in identities)
            )
    if delivery.sla_due is not None:
        lines.append(reader.answer_by(delivery.sla_due, now))
    unreachable = conv.get("unreachable")
    if isinstance(unreachable, Mapping):
        since = reader.moment(str(unreachable.get("since", "")), now)
        detail = unreachable.get("detail", "")
        lines.append(w("not_reached", channel=channel, when=since, detail=detail))
    reason = delivery.reason or {}
    if reason:
        others = ctx.get("other_conversations") or []
        why = why_you(reader, reason, now, agent_id=delivery.agent.id, others=others)
        lines.append(f"{w('why_you')}: {why}")
    lines.extend(promises_owed(reader, ctx.get("promises"), now))
    if delivery.note:
        lines.append(f"{w('note')}: {delivery.note}")
    others = ctx.get("other_conversations") or []
    if others:
        lines.append(
            f"{w('others')}: "
            + "; ".join(
                f"#{o.get('ref')} {o.get('channel')} ({o.get('status')})" for o in others[:5]
            )
        )
    transcript = (ctx.get("transcript") or [])[-TRANSCRIPT_LINES:]
    if transcript:
        lines.append("")
        for m in transcript:
            who = (m.get("from") or {}).get("name") or (m.get("from") or {}).get("role", "")
            text = " ".join(str(m.get("text", "")).split())
            if len(text) > LINE_CHARS:
                text = text[: LINE_CHARS - 1] + "…"
            lines.append(f"{who}: {text}")
    elif envelope.text:
        lines.extend(["", envelope.text])
    lines.extend(["", w("reply_hint")])
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


WHICH_CONVERSATION = (
    "Which conversation is this for? Reply (swipe left) to its card so the customer gets it."
)
NOT_AN_AGENT = "Sorry, this chat is for our support team only. Write to us here as a customer."
TRANSFER_HOW = "To transfer, reply to the card with: /transfer <queue> [note for the next agent]"
PICK_QUEUE = "Transfer to which queue? (With a note: reply /transfer <queue> <note> to the card.)"
