"""Envelope → email, pure: the message for each outbound envelope, built and not sent.

`build_message` turns a customer reply (or a notice we start) into one
threaded email: the addressing from the reply context our intake wrote, else
from `meta` (see the package docstring); In-Reply-To and References rooted
at the thread key; one `Re:` when it answers something; the `[#ref]` token in
the subject and in a plus-addressed Reply-To; `Auto-Submitted: auto-replied`
on an automatic message. `client` sends it and applies the rate limit.

`build_notification` turns a delivery to an agent (an envelope with a
`delivery`, on `omni.agent.<channel>`) into an email for the agent's mailbox:

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

Both build the same Message-ID for the same envelope (`threads.message_id_for`)
and raise `OutboundError` for an envelope they cannot use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from html import escape
from typing import Any

from connectors.email.agentmail import REPLY_MARKER, reply_to_address
from connectors.email.config import EmailChannelConfig, SmtpConfig
from connectors.email.errors import OutboundError
from connectors.email.threads import (
    message_id_for,
    parse_msgids,
    plus_address,
    reply_subject,
    with_token,
)
from router.agenttext import Reader, promises_owed, why_you
from router.agenttext.words import WORDS
from router.envelope import Attachment, Envelope

_TOKEN = re.compile(r"^[A-Za-z0-9]{4,32}$")


# --- customer replies ------------------------------------------------------------------


def _str_list(value: object, what: str, part: str = "meta") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise OutboundError(f"{part}.{what} must be a list of strings")


def addressing(envelope: Envelope) -> tuple[list[str], list[str], str | None, list[str]]:
    """(to, cc, in_reply_to, references): from the reply context our intake wrote (the
    router hands it back unchanged), else from `meta` (a message we start)."""
    context, meta = envelope.reply_context, envelope.meta
    if context:
        to = _str_list(context.get("to"), "to", "reply_context")
        in_reply_to = context.get("message_id")
        references = _str_list(context.get("references"), "references", "reply_context")
        what = "reply_context.message_id"
    else:
        to = _str_list(meta.get("to"), "to")
        in_reply_to = meta.get("in_reply_to")
        references = _str_list(meta.get("references"), "references")
        what = "meta.in_reply_to"
    if not to:
        raise OutboundError("names no recipient (reply_context.to or meta.to)")
    if in_reply_to is not None and not isinstance(in_reply_to, str):
        raise OutboundError(f"{what} must be a string")
    return to, _str_list(meta.get("cc"), "cc"), in_reply_to, references


def is_auto(envelope: Envelope) -> bool:
    """An automatic message of ours (acknowledgement, notice): marked, and rate-limited."""
    return envelope.automated is not None and envelope.automated.auto


def build_message(
    envelope: Envelope, cfg: SmtpConfig, files: Sequence[tuple[Attachment, bytes]] = ()
) -> EmailMessage:
    """The email for an outbound envelope, with `files` (its attachments and their bytes)
    attached; raises `OutboundError` if the envelope is unusable."""
    if envelope.direction != "out":
        raise OutboundError(f"not an outbound envelope (direction {envelope.direction!r})")
    meta = envelope.meta
    to, cc, in_reply_to, answered = addressing(envelope)
    ref = meta.get("conversation_ref")
    if ref is not None and (not isinstance(ref, str) or not _TOKEN.match(ref)):
        raise OutboundError("meta.conversation_ref must be 4-32 letters and digits")

    references: list[str] = []
    for mid in [envelope.thread_key, *answered]:
        references.extend(parse_msgids(mid))
    if in_reply_to:
        references.extend(parse_msgids(in_reply_to))
    references = list(dict.fromkeys(references))  # order kept, duplicates dropped

    subject = envelope.subject or ""
    if in_reply_to or answered:
        subject = reply_subject(subject)
    if ref:
        subject = with_token(subject, ref)

    msg = EmailMessage()
    msg["From"] = formataddr((cfg.from_name or "", cfg.from_address))
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if ref and cfg.reply_to_tokens:
        msg["Reply-To"] = formataddr((cfg.from_name or "", plus_address(cfg.from_address, ref)))
    msg["Subject"] = subject or "(no subject)"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id_for(envelope, cfg.from_address)
    if in_reply_to:
        ids = parse_msgids(in_reply_to)
        if ids:
            msg["In-Reply-To"] = ids[0]
    if references:
        msg["References"] = " ".join(references)
    if is_auto(envelope):
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer our robot
    msg.set_content(envelope.text or "")
    if envelope.html:
        msg.add_alternative(envelope.html, subtype="html")
    for attachment, data in files:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=attachment.name)
    return msg


# --- notifications to agents -------------------------------------------------------------


HOW_TO_REPLY = (
    "Reply to this email to answer the customer on their own channel. A first line"
    " #resolve, #transfer <queue or agent> [note], #note <text>, #accept, #reopen,"
    " #link <kind> <value>, #unlink <kind> <value>, #promise <17:00|3h|2d> <what you"
    " promised>, #kept, #away, #available or #offline is a command; text under it still"
    " goes to the customer (under #note it stays a note)."
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
    msg["Subject"] = envelope.subject or _reader(envelope).event(event)
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


def _reader(envelope: Envelope) -> Reader:
    agent = envelope.delivery.agent if envelope.delivery else None
    return Reader.of(agent.language if agent else None, agent.timezone if agent else None)


def _title(reader: Reader, event: str) -> str:
    key = f"title.{event}"
    return reader.word(key) if key in WORDS[reader.language] else reader.event(event)


def render_html(envelope: Envelope, delivery: Mapping[str, Any], *, with_marker: bool) -> str:
    """The HTML part: the delivery's context laid out (every value escaped)."""
    event = str(delivery.get("event") or "message")
    context = _context(delivery)
    reader, now = _reader(envelope), envelope.received_at
    w = reader.word
    parts = ['<html><body style="font-family:sans-serif;font-size:14px">']
    if with_marker:
        parts.append(f'<p style="color:#888;font-size:12px">{_e(REPLY_MARKER)}</p>')
    parts.append(f"<h2>{_e(_title(reader, event))}</h2>")
    if not context:  # a notice: the text says it all
        parts.append(f'<p style="white-space:pre-wrap">{_e(envelope.text)}</p>')
        parts.append("</body></html>")
        return "".join(parts)

    customer = context.get("customer") or {}
    conv = context.get("conversation") or {}
    others = [o for o in context.get("other_conversations") or [] if isinstance(o, dict)]
    identities = "<br>".join(
        f"{_e(i.get('kind'))}: {_e(i.get('value'))}"
        for i in customer.get("identities") or []
        if isinstance(i, dict)
    )
    suggestions = "<br>".join(
        _e(w("also_claimed", identity=s.get("identity"), customer=s.get("proposed_customer")))
        for s in customer.get("link_suggestions") or []
        if isinstance(s, dict)
    )
    parts.append(f"<h3>{_e(w('customer'))}</h3>")
    parts.append(
        _rows(
            [
                (w("name"), _e(customer.get("name") or w("no_name"))),
                (w("tier_label"), _e(customer.get("tier"))),
                (
                    w("tags_label"),
                    _e(", ".join(customer.get("tags") or [])),
                ),
                (w("language"), _e(customer.get("language"))),
                (w("identities"), identities),
                (w("possible_links"), suggestions),
            ]
        )
    )
    priority = _e(conv.get("priority"))
    if conv.get("complaint"):
        priority += f" — <strong>{_e(w('complaint'))}</strong>"
    parts.append(f"<h3>Conversation #{_e(conv.get('ref'))}</h3>")
    reason = delivery.get("reason")
    due = envelope.delivery.sla_due if envelope.delivery else None
    due = due or conv.get("sla_due_at")
    owed = promises_owed(reader, context.get("promises"), now)
    why = (
        why_you(reader, reason, now, agent_id=envelope.delivery.agent.id, others=others)
        if isinstance(reason, dict) and reason and envelope.delivery
        else None
    )
    parts.append(
        _rows(
            [
                (w("subject"), _e(conv.get("subject"))),
                (w("channel"), _e(f"{conv.get('channel')} ({conv.get('channel_type')})")),
                (w("priority"), priority),
                (
                    w("answer_by_label"),
                    f"<strong>{_e(reader.moment(due, now))}</strong>"
                    f" ({_e(reader.relative(due, now))})"
                    if due
                    else None,
                ),
                (w("queue"), _e(conv.get("queue"))),
                (w("tags_label"), _e(", ".join(conv.get("tags") or []))),
                (w("language"), _e(conv.get("language"))),
                (w("why_you"), _e(why) if why else None),
                (w("promised"), "<br>".join(_e(x) for x in owed) or None),
                (w("note"), _e(delivery.get("note")) if delivery.get("note") else None),
            ]
        )
    )
    parts.append(f"<h3>{_e(w('transcript'))}</h3>")
    for m in context.get("transcript") or []:
        if not isinstance(m, dict):
            continue
        sender = m.get("from")
        who: dict[str, Any] = sender if isinstance(sender, dict) else {}
        name = who.get("name") or who.get("address") or who.get("role") or ""
        when = reader.moment(m.get("at"), now)
        files = ", ".join(
            str(a.get("name")) for a in m.get("attachments") or [] if isinstance(a, dict)
        )
        parts.append(
            '<div style="margin:8px 0;padding:6px 10px;border-left:3px solid'
            f' {"#4a90d9" if m.get("direction") == "in" else "#999"}">'
            f'<div style="color:#666;font-size:12px">{_e(when)} — {_e(name)}'
            f" ({_e(m.get('kind'))})</div>"
            f'<div style="white-space:pre-wrap">{_e(m.get("text"))}</div>'
            + (
                f'<div style="color:#666;font-size:12px">{_e(w("attachments"))}: {_e(files)}</div>'
                if files
                else ""
            )
            + "</div>"
        )
    if others:
        parts.append(f"<h3>{_e(w('others'))}</h3><ul>")
        for o in others:
            parts.append(
                f"<li>#{_e(o.get('ref'))} on {_e(o.get('channel'))} ({_e(o.get('status'))},"
                f" {_e(reader.moment(o.get('updated_at'), now))}): {_e(o.get('extract'))}</li>"
            )
        parts.append("</ul>")
    if with_marker:
        parts.append(f'<p style="color:#888;font-size:12px">{_e(HOW_TO_REPLY)}</p>')
    parts.append("</body></html>")
    return "".join(parts)
