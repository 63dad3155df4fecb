"""What the router would send, as `simulate` reports it beside its decisions.

Four kinds of output, each read from where the daemon would put it:
`customer_message` and `delivery` (or `supervisor_notice`, a delivery of an
escalation or a broken promise) from the outbox records it would publish, `incident` from the
incident register. Each is reported with the clock and the input that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.envelope import Envelope
from router.routing.context import Decision

SUPERVISOR_EVENTS = frozenset({"escalation", "praise_digest", "promise_broken"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Output:
    output: str  # customer_message | delivery | supervisor_notice | incident
    input: str | None
    conversation_id: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self, at: datetime) -> dict[str, Any]:
        return {
            "type": "output",
            "output": self.output,
            "at": at.isoformat(),
            "input": self.input,
            "conversation_id": self.conversation_id,
            **self.fields,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One line of the timeline: a decision or an output, at a time, on a conversation
    (`channel/thread`, the same in every run of the same events)."""

    at: datetime
    item: Decision | Output
    conversation: str | None


def customer_message(env: Envelope, input_id: str | None) -> Output:
    meta = env.meta
    return Output(
        output="customer_message",
        input=input_id,
        conversation_id=env.conversation_id,
        fields={
            "channel": env.channel,
            "thread": env.thread_key,
            # What the channel threads the message by (its intake wrote it).
            "reply_context": dict(env.reply_context),
            "purpose": meta.get("purpose"),
            "template": meta.get("template"),
            "language": meta.get("language"),
            "agent": env.sender.address if env.sender.role == "agent" else None,
            "subject": env.subject,
            "text": env.text,
            # Where a waiting customer stands (an acknowledgement, a standing update).
            "standing": env.standing.model_dump(mode="json") if env.standing else None,
        },
    )


def delivery(env: Envelope, input_id: str | None) -> Output:
    d = env.delivery.model_dump(mode="json") if env.delivery is not None else {}
    context = d.get("context") or {}
    customer = context.get("customer") or {}
    conv = context.get("conversation") or {}
    event = d.get("event")
    return Output(
        output="supervisor_notice" if event in SUPERVISOR_EVENTS else "delivery",
        input=input_id,
        conversation_id=env.conversation_id,
        fields={
            "agent": (d.get("agent") or {}).get("id"),
            "event": event,
            "sink": env.channel,
            "sla_due": conv.get("sla_due_at"),
            "reason": d.get("reason") or {},
            "note": d.get("note"),
            # What the agent is handed, in brief (the full context is in the delivery).
            "context": {
                "ref": conv.get("ref"),
                "customer": customer.get("name"),
                "tier": customer.get("tier"),
                "identities": [f"{i['kind']} {i['value']}" for i in customer.get("identities", [])],
                "priority": conv.get("priority"),
                "queue": conv.get("queue"),
                "complaint": conv.get("complaint"),
                "messages": len(context.get("transcript") or []),
                "other_conversations": [
                    f"{o['channel']} #{o['ref']}" for o in context.get("other_conversations") or []
                ],
            },
        },
    )


def incident(row: Any, input_id: str | None) -> Output:
    return Output(
        output="incident",
        input=input_id,
        conversation_id=row.conversation_id,
        fields={"kind": row.kind, "cause": row.cause, "details": dict(row.details or {})},
    )
