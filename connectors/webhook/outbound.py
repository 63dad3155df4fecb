"""A delivery envelope as the webhook POSTs it: the JSON body and its signed headers.

The signature scheme, used both ways (the tool signs its events the same way;
`inbound.verify` checks them): HMAC-SHA256 over the timestamp and the exact body.

    X-Omnirouter-Timestamp: <unix seconds>
    X-Omnirouter-Signature: v1=<hex of HMAC-SHA256(key, b"<timestamp>." + body)>

The helpers (HMAC, constant-time compare, clock skew) are `router.connector.signing`'s.
"""

from __future__ import annotations

import orjson

from router.agenttext import Reader, why_you
from router.connector import signing
from router.envelope import Delivery, Envelope

ID_HEADER = "X-Omnirouter-Id"
TIMESTAMP_HEADER = "X-Omnirouter-Timestamp"
SIGNATURE_HEADER = "X-Omnirouter-Signature"
SCHEME = "v1"


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: `v1=<hex>`."""
    return f"{SCHEME}={signing.hmac_hex(key, timestamp, body)}"


def body_of(envelope: Envelope, delivery: Delivery) -> bytes:
    """The JSON body POSTed for one delivery (the same bytes on every retry)."""
    return orjson.dumps(
        {
            "v": 1,
            "id": envelope.id,
            "event": delivery.event,
            "agent": delivery.agent.model_dump(mode="json"),
            "conversation_id": envelope.conversation_id,
            "subject": envelope.subject,
            # Human text in the agent's language and zone (the summary); the fields
            # beside it stay machine-readable (ISO times, reason codes).
            "text": envelope.text,
            "token": delivery.token,
            "reason": delivery.reason,
            "note": delivery.note,
            "sla_due": delivery.sla_due.isoformat() if delivery.sla_due else None,
            "human": _human(envelope, delivery),
            "context": delivery.context or None,
            # When the router made the delivery: stable across retries.
            "sent_at": (envelope.sent_at or envelope.received_at).isoformat(),
        }
    )


def _human(envelope: Envelope, delivery: Delivery) -> dict[str, str | None]:
    """The parts a tool shows on their own (a Slack field, a Teams fact), written for
    the agent: when the answer is due and why they got it. Written as of the
    delivery's own time, so a retry sends the same bytes."""
    reader = Reader.of(delivery.agent.language, delivery.agent.timezone)
    now = envelope.received_at
    context = delivery.context or {}
    due = delivery.sla_due
    return {
        "answer_by": reader.answer_by(due, now) if due else None,
        "why_you": why_you(
            reader,
            delivery.reason,
            now,
            agent_id=delivery.agent.id,
            others=context.get("other_conversations") or [],
        )
        if delivery.reason
        else None,
    }


def headers_for(key: bytes, envelope_id: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of a POST of `body`, signed with `key` at `now` (Unix seconds)."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        ID_HEADER: envelope_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }
