"""A message the customer's channel refused for good marks the conversation: later
deliveries say the customer is not reached there, until the customer writes again."""

from __future__ import annotations

from typing import Any

from router.channels import delivery_failed
from tests.router.routing.scenarios import Run, at, mail


def last_delivery(run: Run) -> Any:
    delivery = run.out("agent.mail")[-1].delivery
    assert delivery is not None
    return delivery


async def fail(run: Run, n: int, detail: str) -> None:
    envelope = run.out("outbound.mail")[n]
    event = delivery_failed("mail", envelope, detail, run.sim.clock)
    run.decisions += await run.sim.engine.handle(event, run.sim.clock)
    run.decisions += await run.sim.drain_outbox()


async def test_an_unreachable_customer_is_shown_until_they_write_again(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    failed_at = run.sim.clock.isoformat()
    await fail(run, 0, "refused (403): the user blocked the bot")
    told = last_delivery(run)
    unreachable = {"since": failed_at, "detail": "refused (403): the user blocked the bot"}
    assert told.event == "delivery_failed"
    assert told.context["conversation"]["unreachable"] == unreachable
    assert "Customer not reached on mail since" in run.out("agent.mail")[-1].text
    # a second failure keeps when it began, with the latest reason
    await run.step(at=at(3), agent="ana", reply="Refunded.", conversation="mail/<a@x>")
    await fail(run, -1, "refused again")
    told = last_delivery(run)
    assert told.context["conversation"]["unreachable"] == {**unreachable, "detail": "refused again"}
    # the customer writes: the channel reaches them again
    await run.step(at=at(5), **mail("a@shop.test", "<a@x>", "unblocked you, sorry"))
    told = last_delivery(run)
    assert told.context["conversation"]["ref"] is not None
    assert told.context["conversation"]["unreachable"] is None
