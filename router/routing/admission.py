"""Admission: what the router refuses before applying anything (it goes to the DLQ).

Checked on each decoded record before its batch transaction, so one bad record
never rolls back the records around it. A record is refused when it could
only do harm: routed on a channel nobody configured (topic names are built
from the channel), with a channel type that is not its channel's, flowing the
wrong way, or from a sender whose address cannot be an identity.
"""

from __future__ import annotations

from router.envelope import Envelope
from router.routing.context import Routing
from router.routing.engine import ROUTER_CHANNEL
from router.routing.identity import IdentityError
from router.routing.messages import resolves_customer


def refusal(ctx: Routing, env: Envelope) -> str | None:
    """Why the router must not apply `env`; None when it may."""
    if env.direction != "in":
        return f"direction {env.direction!r}: the router applies inbound records only"
    role = env.sender.role
    if env.kind == "timer" and role != "system":
        return "a timer event must come from the router itself (sender.role system)"
    if role == "system" and env.channel == ROUTER_CHANNEL == env.channel_type:
        return None
    configured = ctx.channels.get(env.channel)
    if configured is None:
        if role == "system" and ctx.sink_types.get(env.channel) == env.channel_type:
            return None  # news about a delivery to an agent's tool (e.g. it failed)
        return f"channel {env.channel!r} is not configured"
    if configured.type != env.channel_type:
        return (
            f"channel_type {env.channel_type!r} does not match channel {env.channel!r}"
            f" (configured as {configured.type!r})"
        )
    if role == "customer" and env.kind in ("message", "call") and resolves_customer(env):
        try:
            ctx.sender_identity(env)
        except IdentityError as exc:
            return f"sender: {exc}"
    return None
