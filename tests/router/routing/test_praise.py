"""Praise goes to the agent (router/routing/praise.py): a good follow-up answer and a
message that reads as praise each reach the agent who handled the conversation once,
complaint words win over praise, and supervisors get a weekly digest."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from router.envelope import Envelope
from router.store.schema import praise
from tests.router.routing.scenarios import Run, at, mail


def to(run: Run, agent: str, event: str) -> list[Envelope]:
    """Deliveries and notices of `event` for `agent` (every sink is the mail channel)."""
    return [
        e
        for e in run.out("agent.mail")
        if e.delivery is not None and e.delivery.agent.id == agent and e.delivery.event == event
    ]


async def praised(run: Run) -> list[Any]:
    async with run.sim.store.transaction(readonly=True) as conn:
        return list((await conn.execute(sa.select(praise).order_by(praise.c.id))).all())


async def resolved_by(run: Run, thread: str, text: str = "my invoice is wrong") -> str:
    """A conversation opened, taken and resolved; the agent who had it."""
    await run.step(**mail("eva@shop.test", thread, text), at=at(0))
    agent = run.actions("assign")[-1].agent
    assert agent is not None
    await run.step(agent=agent, command="resolve", conversation=f"mail/{thread}", at=at(5))
    return agent


async def test_a_good_follow_up_answer_reaches_the_agent_once(run: Run) -> None:
    agent = await resolved_by(run, "<e@x>")
    await run.step(at=at(70))  # the follow-up question goes an hour after
    assert [e.meta.get("purpose") for e in run.out("outbound.mail")][-1] == "followup"
    await run.step(**mail("eva@shop.test", "<e@x>", "5, all good"), at=at(80))
    assert run.actions("close")
    (told,) = to(run, agent, "praise")
    assert told.delivery is not None
    assert told.delivery.reason == {"rule": "praise", "source": "answer", "words": "5, all good"}
    assert "5, all good" in told.text
    [row] = await praised(run)
    assert (row.agent_id, row.source) == (agent, "answer")


async def test_thanks_and_praise_after_resolution_reach_the_agent_and_do_not_reopen(
    run: Run,
) -> None:
    agent = await resolved_by(run, "<e@x>")
    await run.step(**mail("eva@shop.test", "<e@x>", "Thank you, great service!"), at=at(20))
    assert run.actions("reopen") == []
    (told,) = to(run, agent, "praise")
    assert told.delivery is not None and told.delivery.reason["source"] == "message"
    assert [(r.agent_id, r.words) for r in await praised(run)] == [
        (agent, "Thank you, great service!")
    ]
    # Praise with a question in it is a new request: it reopens.
    again = "Great service! Can you also send the invoice?"
    await run.step(**mail("eva@shop.test", "<e@x>", again), at=at(30))
    assert run.actions("reopen")


async def test_praise_on_an_owned_conversation_is_one_delivery_that_says_so(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<e@x>", "my invoice is wrong"), at=at(0))
    agent = run.actions("assign")[-1].agent
    assert agent is not None
    before = len(run.out("agent.mail"))
    await run.step(**mail("eva@shop.test", "<e@x>", "muchas gracias, sois los mejores"), at=at(3))
    (delivery,) = run.out("agent.mail")[before:]
    assert delivery.delivery is not None and delivery.delivery.event == "message"
    assert delivery.delivery.reason["praise"]["source"] == "message"
    assert [r.agent_id for r in await praised(run)] == [agent]


async def test_complaint_words_win_over_praise_in_a_mixed_message(run: Run) -> None:
    agent = await resolved_by(run, "<e@x>")
    mixed = "Great service until now, but this delay is unacceptable"
    await run.step(**mail("eva@shop.test", "<e@x>", mixed), at=at(20))
    assert to(run, agent, "praise") == []
    assert await praised(run) == []
    assert run.actions("reopen")  # a complaint: back to work


async def test_supervisors_get_the_week_s_praise_in_a_digest(run: Run) -> None:
    agent = await resolved_by(run, "<e@x>")
    await run.step(**mail("eva@shop.test", "<e@x>", "Thanks a lot, well done"), at=at(20))
    await run.step(**mail("bo@shop.test", "<b@x>", "hello, my parcel"), at=at(30))
    # Monday 2 March 10:00 UTC: the digest is next Monday 09:00 (no business hours: UTC).
    await run.step(at="2026-03-09T08:59:00+00:00")
    assert run.actions("praise_digest") == []
    await run.step(at="2026-03-09T09:00:01+00:00")
    (digest,) = run.actions("praise_digest")
    assert digest.reason["praise"] == 1 and digest.reason["sent_to"] == ["ana"]
    (notice,) = to(run, "ana", "praise_digest")
    assert notice.delivery is not None and notice.delivery.reason == {"praise": {agent: 1}}
    assert "Thanks a lot, well done" in notice.text
    # The next one is scheduled; a week with no praise sends nothing.
    await run.step(at="2026-03-16T09:00:01+00:00")
    assert [d.reason["praise"] for d in run.actions("praise_digest")] == [1, 0]
    assert len(to(run, "ana", "praise_digest")) == 1
