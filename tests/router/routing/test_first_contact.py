"""First-contact resolution (router/routing/first_contact.py): by the first agent, with
no transfer and no reopening; and `simulate`'s summary of it."""

from __future__ import annotations

from router.routing import first_contact
from router.simulate.figures import channel_figures
from router.store import routing as db
from tests.router.routing.scenarios import Run, at, mail


async def judged(run: Run, thread: str) -> dict[str, object]:
    async with run.sim.store.transaction(readonly=True) as conn:
        conv = await db.conversation_by_thread(conn, "mail", thread)
    assert conv is not None
    return first_contact.judged(conv)


async def test_resolved_by_the_first_agent_is_a_first_contact(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<e@x>", "my invoice is wrong"), at=at(0))
    (assigned,) = run.actions("assign")
    await run.step(agent=assigned.agent, command="resolve", conversation="mail/<e@x>", at=at(5))
    (resolved,) = run.actions("resolve")
    assert resolved.reason["first_contact"] is True
    assert resolved.reason["owner"] == assigned.agent
    record = await judged(run, "<e@x>")
    assert record == {
        "count": 1,
        "first_contact": True,
        "agent": assigned.agent,
        "queue": assigned.queue,
    }


async def test_a_transferred_conversation_is_not_a_first_contact(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<e@x>", "my invoice is wrong"), at=at(0))
    first = run.actions("assign")[0].agent
    await run.step(agent=first, command="transfer", args=["general"], conversation="mail/<e@x>")
    second = run.actions("assign")[-1].agent
    assert second != first
    await run.step(agent=second, command="resolve", conversation="mail/<e@x>", at=at(9))
    assert run.actions("resolve")[-1].reason["first_contact"] is False


async def test_a_reopened_conversation_is_not_a_first_contact_when_resolved_again(
    run: Run,
) -> None:
    await run.step(**mail("eva@shop.test", "<e@x>", "my invoice is wrong"), at=at(0))
    agent = run.actions("assign")[0].agent
    await run.step(agent=agent, command="resolve", conversation="mail/<e@x>", at=at(5))
    await run.step(**mail("eva@shop.test", "<e@x>", "it is still wrong"), at=at(20))
    assert run.actions("reopen")
    # Still hers (no new assignment, or the same agent again): yet no first contact.
    again = {"id": "resolve-again"}  # a second command, not a redelivery of the first
    await run.step(agent=agent, command="resolve", conversation="mail/<e@x>", at=at(30), **again)
    assert [d.reason["first_contact"] for d in run.actions("resolve")] == [True, False]
    assert (await judged(run, "<e@x>"))["count"] == 2


async def test_simulate_s_summary_gives_the_share_per_channel(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<e@x>", "my invoice is wrong"), at=at(0))
    await run.step(**mail("bob@shop.test", "<b@x>", "where is my parcel"), at=at(1))
    eva, bob = (d.agent for d in run.actions("assign"))
    await run.step(agent=eva, command="resolve", conversation="mail/<e@x>", at=at(5))
    await run.step(agent=bob, command="transfer", args=["general"], conversation="mail/<b@x>")
    third = run.actions("assign")[-1].agent
    await run.step(agent=third, command="resolve", conversation="mail/<b@x>", at=at(9))
    (figures,) = [
        f for f in await channel_figures(run.sim.store, run.sim.clock) if f.channel == "mail"
    ]
    assert figures.first_contact_resolution == 0.5
