"""Delivery failures: recorded in the incident register and told to the owning agent.

A message to a customer that failed for good also marks the conversation: the
customer is not reached on its channel (`thread_meta.unreachable`), which every
later delivery shows until the customer writes on it again.

Two ways a failure reaches the router, both through the inbound topic: a
connector's report that a send failed for good (a `command` from `system`
named `delivery_failed`), and a bounce (a delivery report, `automated.bounce`),
which names our envelope when the channel recognised the message as ours.
"""

from __future__ import annotations

from typing import Any

from router.envelope import Bounce, Envelope
from router.routing.context import Routing, Unit
from router.routing.delivery import UNREACHABLE, deliver
from router.store import routing as db

MAX_DETAIL = 500


async def system_event(ctx: Routing, unit: Unit, env: Envelope) -> None:
    name = env.command.name if env.command is not None else ""
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


async def bounce(ctx: Routing, unit: Unit, env: Envelope, report: Bounce) -> bool:
    """Handle a bounce report; False when it names no message of ours."""
    if report.envelope_id is None:
        return False
    detail = "; ".join(
        f"{r.address or '?'}: {r.status or ''} {r.diagnostic or ''}".strip()
        for r in report.recipients
    )
    return await record_failure(
        ctx,
        unit,
        report.envelope_id,
        detail or "bounced",
        {"bounce": report.model_dump(mode="json"), "source": env.id},
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
    await unit.incident(
        "delivery_failure",
        conv.id if conv is not None else None,
        conv.customer_id if conv is not None else None,
        f"message not delivered: {detail}"[:500],
        {"envelope_id": envelope_id, **details},
    )
    if conv is None:
        unit.decide("delivery_failed", reason={"envelope_id": envelope_id, "detail": detail})
        return True
    if to_customer is not None:
        conv = await _unreachable(unit, conv, detail)
    reason = {"rule": "delivery_failed", "detail": detail, "envelope_id": envelope_id}
    if conv.owner_agent_id is not None and to_customer is not None:
        await deliver(ctx, unit, conv, conv.owner_agent_id, "delivery_failed", reason)
    unit.decide(
        "delivery_failed", conversation_id=conv.id, agent=conv.owner_agent_id, reason=reason
    )
    return True


async def _unreachable(unit: Unit, conv: Any, detail: str) -> Any:
    """Record on the conversation that the customer is not reached on its channel (since
    the first such failure), for every later delivery to show until they write again."""
    meta = dict(conv.thread_meta or {})
    since = (meta.get(UNREACHABLE) or {}).get("since") or unit.now.isoformat()
    meta[UNREACHABLE] = {"since": since, "detail": detail[:MAX_DETAIL]}
    return await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
