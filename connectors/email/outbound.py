"""Notifications to agents: a delivery from the router becomes an email in the agent's mailbox.

A delivery is an envelope with a `delivery` (the router puts it on
`omni.agent.<channel>`; see the package docstring). Its email:

- To the agent's address (`delivery.sink.address`), From `smtp.from_address`
  with `agents.from_name`, Subject the router's (`[#REF] ...`);
- Reply-To the agents' reply address with the signed conversation token as a
  plus-address (`agentmail.reply_to_address`), when the delivery has a token
  (rejection notices have none: answering them does nothing);
- `Auto-Submitted: auto-generated` and `X-Auto-Response-Suppress: All`, so
  no out-of-office reply is sent back, and `X-Omnirouter-Event` /
  `X-Omnirouter-Conversation` for the agent's own mail filters;
- In-Reply-To / References to `<omni.conversation.<id>@domain>`, so every
  notification about one conversation is one thread in the agent's client;
- a text part (the "reply above this line" marker, the router's plain summary,
  how to answer) and an HTML part with the same context laid out: the
  customer and all their identities, the conversation (priority, SLA due time,
  queue, tags), why this agent got it, the transcript and the customer's
  other recent conversations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from html import escape
from typing import Any

from connectors.email.agentmail import REPLY_MARKER, reply_to_address
from connectors.email.client import OutboundError, message_id_for
from connectors.email.config import EmailChannelConfig
from router.envelope import Envelope

TITLES = {
    "assigned": "A conversation for you",
    "message": "New message from the customer",
    "transfer_note": "Transferred to you",
    "escalation": "Escalation: the answer is due soon",
    "delivery_failed": "Your message did not reach the customer",
    "rejected": "Not delivered",
}

HOW_TO_REPLY = (
    "Reply to this email to answer the customer on their own channel. A first line"
    " #resolve, #transfer <queue or agent> [note], #note <text>, #accept, #reopen,"
    " #link <kind> <value>, #unlink <kind> <value>, #away, #available or #offline is"
    " a command; text under it still goes to the customer (under #note it stays a note)."
)


def delivery_of(envelope: Envelope) -> dict[str, Any] | None:
    """The envelope's delivery to an agent, as its JSON form."""
    delivery = envelope.delivery
    return None if delivery is None else delivery.model_dump(mode="json")


def agent_address(delivery: Mapping[str, Any]) -> str:
    sink = delivery.get("sink")
    address = sink.get("address") if isinstance(sink, dict) else None
    if not isinstance(address, str) or "@" not in address:
        raise OutboundError("delivery.sink.address is not an email address")
    return address


def build_notification(envelope: Envelope, cfg: EmailChannelConfig) -> EmailMessage:
    """The email for a delivery envelope; raises `OutboundError` if it is unusable."""
    delivery = delivery_of(envelope)
    if delivery is None:
        raise OutboundError("not a delivery to an agent (no delivery)")
    to = agent_address(delivery)
    token = delivery.get("token")
    if token is not None and not isinstance(token, str):
        raise OutboundError("delivery.token must be a string")
    event = str(delivery.get("event") or "message")
    from_address = cfg.smtp.from_address
    domain = from_address.rpartition("@")[2]

    msg = EmailMessage()
    msg["From"] = formataddr((cfg.agents.from_name, from_address))
    msg["To"] = to
    if token:
        try:
            reply_to = reply_to_address(cfg.agent_reply_address, token)
        except ValueError as exc:
            raise OutboundError(f"delivery.token: {exc}") from exc
        msg["Reply-To"] = formataddr((cfg.agents.from_name, reply_to))
    msg["Subject"] = envelope.subject or TITLES.get(event, "omnirouter")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id_for(envelope, from_address)
    if envelope.conversation_id:
        root = f"<omni.conversation.{envelope.conversation_id}@{domain}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Omnirouter-Event"] = event
    conversation = _context(delivery).get("conversation") or {}
    if conversation.get("ref"):
        msg["X-Omnirouter-Conversation"] = str(conversation["ref"])

    if token:
        text = f"{REPLY_MARKER}\n\n{envelope.text}\n\n-- \n{HOW_TO_REPLY}\n"
    else:
        text = f"{envelope.text}\n"
    msg.set_content(text)
    msg.add_alternative(render_html(envelope, delivery, with_marker=bool(token)), subtype="html")
    return msg


# --- HTML ---------------------------------------------------------------------------------


def _context(delivery: Mapping[str, Any]) -> dict[str, Any]:
    context = delivery.get("context")
    return context if isinstance(context, dict) else {}


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _rows(pairs: list[tuple[str, object]]) -> str:
    cells = "".join(
        f'<tr><th align="left" valign="top" style="padding:2px 12px 2px 0">{_e(k)}</th>'
        f"<td>{v}</td></tr>"
        for k, v in pairs
        if v not in (None, "", [])
    )
    return f'<table cellspacing="0" cellpadding="0">{cells}</table>'


def _reason(reason: Mapping[str, Any]) -> str:
    rule = str(reason.get("rule") or "").replace("_", " ")
    detail = str(reason.get("detail") or "")
    skills = reason.get("skills")
    needs = ""
    if isinstance(skills, dict) and skills:
        needs = "needs " + ", ".join(f"{k} {v}" for k, v in skills.items())
    return _e(" — ".join(p for p in (rule, detail, needs) if p))


def render_html(envelope: Envelope, delivery: Mapping[str, Any], *, with_marker: bool) -> str:
    """The HTML part: the delivery's context laid out (every value escaped)."""
    event = str(delivery.get("event") or "message")
    context = _context(delivery)
    parts = ['<html><body style="font-family:sans-serif;font-size:14px">']
    if with_marker:
        parts.append(f'<p style="color:#888;font-size:12px">{_e(REPLY_MARKER)}</p>')
    parts.append(f"<h2>{_e(TITLES.get(event, event))}</h2>")
    if not context:  # a notice: the text says it all
        parts.append(f'<p style="white-space:pre-wrap">{_e(envelope.text)}</p>')
        parts.append("</body></html>")
        return "".join(parts)

    customer = context.get("customer") or {}
    conv = context.get("conversation") or {}
    identities = "<br>".join(
        f"{_e(i.get('kind'))}: {_e(i.get('value'))}"
        for i in customer.get("identities") or []
        if isinstance(i, dict)
    )
    suggestions = "<br>".join(
        f"{_e(s.get('identity'))} also claimed by customer {_e(s.get('proposed_customer'))}"
        for s in customer.get("link_suggestions") or []
        if isinstance(s, dict)
    )
    parts.append("<h3>Customer</h3>")
    parts.append(
        _rows(
            [
                ("Name", _e(customer.get("name") or "(no name)")),
                ("Tier", _e(customer.get("tier"))),
                ("Tags", _e(", ".join(customer.get("tags") or []))),
                ("Language", _e(customer.get("language"))),
                ("Identities", identities),
                ("Possible links", suggestions),
            ]
        )
    )
    priority = _e(conv.get("priority"))
    if conv.get("complaint"):
        priority += " — <strong>complaint</strong>"
    parts.append(f"<h3>Conversation #{_e(conv.get('ref'))}</h3>")
    reason = delivery.get("reason")
    parts.append(
        _rows(
            [
                ("Subject", _e(conv.get("subject"))),
                ("Channel", _e(f"{conv.get('channel')} ({conv.get('channel_type')})")),
                ("Priority", priority),
                ("Answer by", f"<strong>{_e(conv['sla_due_at'])}</strong>")
                if conv.get("sla_due_at")
                else ("Answer by", None),
                ("Queue", _e(conv.get("queue"))),
                ("Tags", _e(", ".join(conv.get("tags") or []))),
                ("Language", _e(conv.get("language"))),
                ("Why you", _reason(reason) if isinstance(reason, dict) else None),
                ("Note", _e(delivery.get("note")) if delivery.get("note") else None),
            ]
        )
    )
    parts.append("<h3>Transcript</h3>")
    for m in context.get("transcript") or []:
        if not isinstance(m, dict):
            continue
        sender = m.get("from")
        who: dict[str, Any] = sender if isinstance(sender, dict) else {}
        name = who.get("name") or who.get("address") or who.get("role") or ""
        files = ", ".join(
            str(a.get("name")) for a in m.get("attachments") or [] if isinstance(a, dict)
        )
        parts.append(
            '<div style="margin:8px 0;padding:6px 10px;border-left:3px solid'
            f' {"#4a90d9" if m.get("direction") == "in" else "#999"}">'
            f'<div style="color:#666;font-size:12px">{_e(m.get("at"))} — {_e(name)}'
            f" ({_e(m.get('kind'))})</div>"
            f'<div style="white-space:pre-wrap">{_e(m.get("text"))}</div>'
            + (
                f'<div style="color:#666;font-size:12px">Attachments: {_e(files)}</div>'
                if files
                else ""
            )
            + "</div>"
        )
    others = [o for o in context.get("other_conversations") or [] if isinstance(o, dict)]
    if others:
        parts.append("<h3>Other recent conversations</h3><ul>")
        for o in others:
            parts.append(
                f"<li>#{_e(o.get('ref'))} on {_e(o.get('channel'))} ({_e(o.get('status'))},"
                f" {_e(o.get('updated_at'))}): {_e(o.get('extract'))}</li>"
            )
        parts.append("</ul>")
    if with_marker:
        parts.append(f'<p style="color:#888;font-size:12px">{_e(HOW_TO_REPLY)}</p>')
    parts.append("</body></html>")
    return "".join(parts)
