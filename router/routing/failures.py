"""Delivery failures: recorded in the incident register and told to the owning agent.

Two ways a failure reaches the router, both through the inbound topic: a
connector's report that a send failed for good (a `command` from `system`
named `delivery_failed`), and a customer-side bounce (a delivery-status
report, `meta.is_bounce`), matched to the message it bounces by our own
Message-ID, which carries the envelope id.
"""

from __future__ import annotations

import re
from typing import Any

from router.envelope import Envelope
from router.routing.context import Routing, Unit
from router.routing.delivery import deliver
from router.store import routing as db

# Our outbound Message-IDs: <omni.<envelope id>@domain> (see connectors/email/smtp.py).
_OUR_MESSAGE_ID = re.compile(r"<?omni\.([0-9a-f]{32})@")


async def system_event(ctx: Routing, unit: Unit, env: Envelope) -> None:
    name = str((env.meta.get("command") or {}).get("name", ""))
    if name != "delivery_failed":
        unit.decide("ignore", reason={"detail": f"unknown system event {name!r}"})
        return
    failed = env.meta.get("failed") or {}
    await record_failure(
        ctx,
        unit,
        str(failed.get("envelope_id", "")),
        str(failed.get("detail", "")),
        failed,
        conversation_id=env.conversation_id,
    )


async def bounce(ctx: Routing, unit: Unit, env: Envelope) -> bool:
    """Handle a bounce report; False when it names no message of ours."""
    report = env.meta.get("bounce") or {}
    match = _OUR_MESSAGE_ID.search(str(report.get("original_message_id", "")))
    if match is None:
        return False
    recipients = report.get("recipients") or []
    detail = "; ".join(
        f"{r.get('address', '?')}: {r.get('status', '')} {r.get('diagnostic', '')}".strip()
        for r in recipients
        if isinstance(r, dict)
    )
    return await record_failure(
        ctx, unit, match.group(1), detail or "bounced", {"bounce": report, "source": env.id}
    )


async def record_failure(
    ctx: Routing,
    unit: Unit,
    envelope_id: str,
    detail: str,
    details: dict[str, Any],
    *,
    conversation_id: str | None = None,
) -> bool:
    """An incident for the undelivered message; its conversation's owner is told when the
    message was one to a customer (a failed delivery to an agent is not sent to them again
    by the same way: that could only fail again)."""
    to_customer = await db.message_conversation(unit.conn, envelope_id)
    conversation_id = to_customer or conversation_id
    conv = await db.conversation(unit.conn, conversation_id) if conversation_id else None
    await db.record_incident(
        unit.conn,
        "delivery_failure",
        conv.id if conv is not None else None,
        conv.customer_id if conv is not None else None,
        f"message not delivered: {detail}"[:500],
        {"envelope_id": envelope_id, **details},
        unit.now,
    )
    if conv is None:
        unit.decide("delivery_failed", reason={"envelope_id": envelope_id, "detail": detail})
        return True
    reason = {"rule": "delivery_failed", "detail": detail, "envelope_id": envelope_id}
    if conv.owner_agent_id is not None and to_customer is not None:
        await deliver(ctx, unit, conv, conv.owner_agent_id, "delivery_failed", reason)
    unit.decide(
        "delivery_failed", conversation_id=conv.id, agent=conv.owner_agent_id, reason=reason
    )
    return True
