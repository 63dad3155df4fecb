"""Why an agent got a conversation, in their words.

The routing reason stays a machine-readable record (`delivery.reason`, the
decision log); this writes it as the agent reads it. A rule we have no words
for is shown as it is, so nothing the router said is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from router.agenttext.reader import Reader

# Rules written from the reason alone, with no fields of their own.
_PLAIN = frozenset({"current_owner", "call", "callback_join", "answered_call", "callback_retry"})


def why_you(
    reader: Reader,
    reason: Mapping[str, Any],
    now: datetime,
    *,
    agent_id: str | None = None,
    others: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The reason in words. `others`: the customer's other conversations (a delivery's
    context), where the last one this agent owned tells when they last spoke."""
    rule = str(reason.get("rule") or "")
    if rule in _PLAIN:
        return reader.word(f"why.{rule}")
    if rule == "last_agent":
        owned = [o for o in others if agent_id and o.get("owner") == agent_id]
        last = max((str(o.get("updated_at") or "") for o in owned), default="")
        if last:
            return reader.word("why.last_agent_on", date=reader.day(last))
        return reader.word("why.last_agent")
    if rule == "best_available":
        skills = [str(s) for s in reason.get("skills") or {}]
        if not skills:
            return reader.word("why.load")
        word = reader.word("skill.one" if len(skills) == 1 else "skill.many")
        return reader.word("why.skills_load", skills=reader.listing(skills), skill_word=word)
    if rule == "transfer":
        previous = reason.get("from")
        if previous:
            return reader.word("why.transfer", from_=previous)
        return reader.word("why.transfer_anyone")
    if rule == "delivery_failed":
        return reader.word("why.delivery_failed", detail=reason.get("detail") or "")
    if rule == "sla_warning" and reason.get("due"):
        return reader.word("why.sla_warning", when=reader.moment(str(reason["due"]), now))
    if rule == "praise":
        return reader.word("why.praise", words=reason.get("words") or "")
    if rule == "overflow_after":
        return reader.word("why.overflow_after", from_=reason.get("from"), to=reason.get("to"))
    return " ".join(str(reason.get(k) or "") for k in ("rule", "detail")).replace("_", " ").strip()


def promises_owed(reader: Reader, promises: Any, now: datetime) -> list[str]:
    """The open promises of a delivery's context (`context.promises`), one line each:
    what is still owed and by when, in the agent's words and zone."""
    lines = []
    for p in promises if isinstance(promises, list) else ():
        if isinstance(p, Mapping) and p.get("state") == "open":
            when = reader.moment(str(p.get("due") or ""), now)
            lines.append(reader.word("promise_open", id=p.get("id"), when=when, text=p.get("text")))
    return lines
