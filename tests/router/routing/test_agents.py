"""Agents' replies and commands: what is refused, and what the agent is told."""

from __future__ import annotations

from tests.router.routing.scenarios import Run, mail
from tests.router.routing.test_delivery import budget, deliveries


async def test_an_agent_reply_too_long_for_the_bus_is_refused_with_a_notice(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<a@x>", "refund please"))
    limit = budget(run)
    await run.step(agent="ana", reply="z" * (limit + 1), conversation="mail/<a@x>")
    [reject] = run.actions("reject")
    assert reject.reason["detail"] == f"reply too long ({limit + 1} bytes; at most {limit})"
    assert not [e for e in run.out("outbound.mail") if e.meta["purpose"] == "reply"]
    [notice] = [d for _, d in deliveries(run) if d["event"] == "rejected"]
    assert "reply too long" in notice["reason"]["detail"]
    # A reply that fits goes out as ever.
    await run.step(agent="ana", reply="Refunded.", conversation="mail/<a@x>")
    assert [e.text for e in run.out("outbound.mail") if e.meta["purpose"] == "reply"] == [
        "Refunded."
    ]


async def test_link_takes_only_kinds_an_identity_can_have(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<l@x>", "hello"))
    await run.step(
        agent="ana",
        command="link",
        args=["iban", "ES9121000418450200051332"],
        conversation="mail/<l@x>",
    )
    [reject] = run.actions("reject")
    assert reject.reason["detail"] == "usage: link <email|phone|telegram|webchat> <value>"
    assert not run.actions("link")
