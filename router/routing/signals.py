"""Live signals from a conversation's agent to its customer: `typing`, `seen`, and
`assigned` (from the router: who now has the conversation).

An agent's tool may say the agent is writing (`typing`) or has read the customer's
messages (`seen`, as of the moment the tool said so: the envelope's `received_at`).
Only the conversation's owner is heard: a supervisor looking in, or an agent whose
conversation has moved on, does not speak for it. The signal goes to the customer as
an outgoing envelope with a `signal` part and no text, only on channel types that
declare `live_signals` (a chat shows it for a few seconds; an email would be noise).
It is never kept in the transcript and is no answer: the SLA clock and the
assignment are untouched.

Why a dropped signal gets no notice, unlike a refused reply: a tool sends one every
few seconds while the agent writes, and a notice for each would flood the agent;
the tool hears of a bad token on its next reply. The decision log says why.
"""

from __future__ import annotations

from typing import Any, Final

from router.envelope import Envelope, Signal
from router.routing import tokens
from router.routing.context import Routing, Unit
from router.routing.delivery import to_customer
from router.store import routing as db

SIGNALS: Final = frozenset({"typing", "seen"})


def live(ctx: Routing, channel_type: str) -> bool:
    spec = ctx.registry.get(channel_type)
    return spec is not None and spec.live_signals


async def signal(ctx: Routing, unit: Unit, env: Envelope, agent_id: str, name: str) -> None:
    """Tell the customer of the conversation `env`'s token names, when `agent_id` owns it
    and its channel type shows live signals; else drop it, saying why."""
    token = env.meta.get("token")
    conv_id = tokens.verify(ctx.signing_key, token, agent_id) if isinstance(token, str) else None
    conv = await db.conversation(unit.conn, conv_id) if conv_id else None
    why = _unheard(ctx, conv, agent_id)
    if conv is None or why is not None:
        unit.decide(
            "signal_dropped",
            conversation_id=getattr(conv, "id", None),
            agent=agent_id,
            reason={"signal": name, "code": why},
        )
        return
    kind: Signal = "typing" if name == "typing" else "seen"
    await to_customer(
        ctx,
        unit,
        conv,
        "",
        purpose=kind,
        auto=True,
        agent=ctx.agents[agent_id],
        signal=kind,
        # "Seen" covers what was taken in before the agent said so, not before now.
        at=min(env.received_at, unit.now),
        record=False,
    )
    unit.decide("signal", conversation_id=conv.id, agent=agent_id, reason={"signal": kind})


async def assigned(ctx: Routing, unit: Unit, conv: Any, agent_id: str) -> None:
    """Tell a live channel's customer who has their conversation now (the agent's name as
    configured): on assignment and on every hand-over to another agent."""
    if not live(ctx, conv.channel_type):
        return
    await to_customer(
        ctx,
        unit,
        conv,
        "",
        purpose="assigned",
        auto=True,
        agent=ctx.agents[agent_id],
        signal="assigned",
        record=False,
    )


def _unheard(ctx: Routing, conv: Any, agent_id: str) -> str | None:
    """Why a signal about `conv` from `agent_id` is not told (None: it is)."""
    if conv is None:
        return "token"
    if conv.status != "open" or conv.owner_agent_id != agent_id:
        return "not_owner"
    if not live(ctx, conv.channel_type):
        return "not_live"
    return None
