"""Agents' replies and commands: what is refused, and what the agent is told."""

from __future__ import annotations

from tests.router.routing.scenarios import Run, at, mail
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


async def ana_and_ben_busy(run: Run) -> str:
    """Eva's email with Ana (billing), Ben busy with another: Eva's conversation id."""
    await run.step(agent="ben", command="away")
    await run.step(**mail("eva@shop.test", "<eva@x>", "refund please"))
    [eva] = run.actions("assign")
    assert eva.agent == "ana"
    await run.step(agent="ben", command="available")
    await run.step(**mail("bob@shop.test", "<bob@x>", "refund too"))
    assert run.actions("assign")[-1].agent == "ben"
    assert eva.conversation_id is not None
    return eva.conversation_id


async def test_a_transfer_to_a_queue_waits_for_an_agent_with_its_skills(run: Run) -> None:
    eva = await ana_and_ben_busy(run)
    await run.step(agent="ana", command="transfer", args=["returns"], conversation="mail/<eva@x>")
    # Only Ben has `returns`, and he is busy: it waits in `returns`, not with Ana.
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben"]
    queued = run.actions("queue")[-1]
    assert (queued.conversation_id, queued.queue) == (eva, "returns")
    assert queued.reason["skills"]["returns"] == 2
    assert queued.reason["skipped"]["ana"] == "transferred it away"
    assert queued.reason["skipped"]["ben"] == "at capacity on email (1)"
    await run.step(agent="ben", command="resolve", conversation="mail/<bob@x>")
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id, last.queue) == ("ben", eva, "returns")


async def test_a_transfer_never_goes_straight_back_to_the_transferring_agent(
    run: Run,
) -> None:
    eva = await ana_and_ben_busy(run)
    # To her own queue: Ana is qualified and free, but she passed it on.
    await run.step(agent="ana", command="transfer", args=["billing"], conversation="mail/<eva@x>")
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben"]
    assert run.actions("queue")[-1].reason["skipped"]["ana"] == "transferred it away"
    # Her capacity coming back does not give it back to her either.
    await run.step(**mail("cid@shop.test", "<cid@x>", "refund as well"))
    assert run.actions("assign")[-1].agent == "ana"
    await run.step(agent="ana", command="resolve", conversation="mail/<cid@x>")
    assert not [d for d in run.actions("assign") if d.conversation_id == eva][1:]
    # Someone else qualified takes it as soon as they can.
    await run.step(agent="ben", command="resolve", conversation="mail/<bob@x>")
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id) == ("ben", eva)


async def test_a_conversation_transferred_away_goes_back_when_named(run: Run) -> None:
    eva = await ana_and_ben_busy(run)
    await run.step(agent="ana", command="transfer", args=["billing"], conversation="mail/<eva@x>")
    assert run.actions("queue")[-1].conversation_id == eva
    # Waiting, it has no owner: Ben may act on it, and sends it back to Ana by name.
    await run.step(agent="ben", command="transfer", args=["ana"], conversation="mail/<eva@x>")
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id, last.reason["rule"]) == ("ana", eva, "last_agent")


async def test_a_transfer_to_a_busy_agent_widens_to_others_but_not_back(run: Run) -> None:
    eva = await ana_and_ben_busy(run)
    await run.step(agent="ana", command="transfer", args=["ben"], conversation="mail/<eva@x>")
    assert run.actions("queue")[-1].reason["rule"] == "waiting_for_last_agent"
    await run.step(at=at(5))  # routing.last_agent_wait (2m) is over: anyone but Ana
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben"]
    assert run.actions("queue")[-1].reason["skipped"]["ana"] == "transferred it away"
    await run.step(at=at(6), agent="ben", command="resolve", conversation="mail/<bob@x>")
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id) == ("ben", eva)


async def test_rejected_and_duplicate_inputs_name_their_conversation(run: Run) -> None:
    first = mail("eva@shop.test", "<eva@x>", "refund please", id="native-1")
    await run.step(**first)
    [assign] = run.actions("assign")
    conv = assign.conversation_id
    assert conv is not None
    [duplicate] = await run.step(**first)
    assert (duplicate.action, duplicate.conversation_id) == ("duplicate", conv)
    # An agent's reply, twice.
    reply = {"agent": "ana", "reply": "Refunded.", "conversation": "mail/<eva@x>", "id": "r-1"}
    await run.step(**reply)
    [duplicate] = await run.step(**reply)
    assert (duplicate.action, duplicate.conversation_id) == ("duplicate", conv)
    # Refused: by a valid token of another agent, an unknown command, a reply too long.
    await run.step(agent="ben", reply="I'll take it", conversation="mail/<eva@x>")
    await run.step(agent="ana", command="frobnicate", conversation="mail/<eva@x>")
    await run.step(agent="ana", reply="z" * (budget(run) + 1), conversation="mail/<eva@x>")
    await run.step(agent="ana", reply="hi", token="deadbeef.forged")
    rejected = [(d.reason["code"], d.conversation_id) for d in run.actions("reject")]
    assert rejected == [
        ("owner", conv),
        ("unknown_command", conv),
        ("too_long", conv),
        ("token", None),  # a forged token names no conversation
    ]
