"""Live signals to a conversation's customer: the agent's `typing` and `seen`, and the
router's `assigned` (router/routing/signals.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from router.envelope import Envelope
from router.store import routing as db
from tests.router.routing.scenarios import T0, Run, mail

START = datetime.fromisoformat(T0)


def secs(s: float) -> str:
    return (START + timedelta(seconds=s)).isoformat()


def chat(visitor: str, text: str = "hello") -> dict[str, Any]:
    return {"channel": "chat", "from": visitor, "thread": visitor, "text": text}


def signals(run: Run, topic: str = "outbound.chat", *, of_agents: bool = True) -> list[Envelope]:
    """The signals sent on `topic`; `of_agents`: only the agents' own (not `assigned`)."""
    return [
        e
        for e in run.out(topic)
        if e.signal is not None and not (of_agents and e.signal == "assigned")
    ]


async def test_the_chat_is_told_who_has_it_on_assignment_and_not_kept(run: Run) -> None:
    await run.step(**chat("v1"), at=secs(1))
    (first,) = run.actions("assign")
    (told,) = signals(run, of_agents=False)
    assert (told.signal, told.text, told.thread_key) == ("assigned", "", "v1")
    assert told.sender.role == "agent" and told.sender.address == first.agent
    (agent,) = [a for a in run.sim.config.agents if a.id == first.agent]
    assert told.sender.name == agent.name and agent.name
    async with run.sim.store.transaction(readonly=True) as conn:
        conv = await db.conversation_by_thread(conn, "chat", "v1")
        assert conv is not None
        rows = await db.transcript(conn, conv.id, 50)
    assert not [r for r in rows if r.envelope.get("signal")]  # not in the transcript
    assert conv.first_response_at is None  # and no answer


async def test_a_chat_that_waited_is_told_when_an_agent_takes_it(run: Run) -> None:
    for n in range(1, 6):  # more chats than the agents' chat capacity: some wait
        await run.step(**chat(f"v{n}"), at=secs(n))
    waiting = run.actions("queue")
    assert waiting, "the scenario's agents took every chat: nothing waited"
    told = {e.thread_key for e in signals(run, of_agents=False)}
    assert all(d.conversation_id for d in waiting)
    first = run.actions("assign")[0]
    await run.step(agent=first.agent, command="resolve", conversation="chat/v1", at=secs(30))
    last = run.actions("assign")[-1]
    assert last.conversation_id == waiting[0].conversation_id
    now_told = [e for e in signals(run, of_agents=False) if e.thread_key not in told]
    assert [(e.signal, e.sender.address) for e in now_told] == [("assigned", last.agent)]


async def test_no_assigned_signal_on_a_channel_type_without_live_signals(run: Run) -> None:
    await run.step(**mail("eve@example.com", "t1", "hello"), at=secs(1))
    assert run.actions("assign")
    assert signals(run, "outbound.mail", of_agents=False) == []


async def test_the_owner_s_typing_and_seen_reach_the_chat_and_are_not_kept(run: Run) -> None:
    await run.step(**chat("v1"), at=secs(1))
    (assigned,) = run.actions("assign")
    owner = assigned.agent
    await run.step(agent=owner, command="typing", conversation="chat/v1", at=secs(20))
    await run.step(agent=owner, command="seen", conversation="chat/v1", at=secs(21))
    typing, seen = signals(run)
    assert (typing.signal, seen.signal) == ("typing", "seen")
    for env in (typing, seen):
        assert env.text == "" and env.thread_key == "v1" and env.direction == "out"
        assert env.sender.role == "agent" and env.sender.address == owner
    assert seen.received_at == datetime.fromisoformat(secs(21))
    assert [d.reason["signal"] for d in run.actions("signal")] == ["typing", "seen"]
    async with run.sim.store.transaction(readonly=True) as conn:
        conv = await db.conversation_by_thread(conn, "chat", "v1")
        assert conv is not None
        rows = await db.transcript(conn, conv.id, 50)
    # Neither kept in the transcript nor an answer: the first-response clock still runs.
    assert not [r for r in rows if r.envelope.get("signal") or r.envelope.get("command")]
    assert conv.first_response_at is None


async def test_only_the_owner_is_heard(run: Run) -> None:
    await run.step(**chat("v1"), at=secs(1))
    await run.step(**chat("v2"), at=secs(2))
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben"]  # v1 Ana's, v2 Ben's
    # Ana is a supervisor: she may act on Ben's chat, but she does not type in it.
    await run.step(agent="ana", command="typing", conversation="chat/v2", at=secs(5))
    await run.step(agent="ben", command="seen", conversation="chat/v1", at=secs(6))
    await run.step(agent="ana", command="seen", token="forged.token", at=secs(7))
    assert signals(run) == []
    codes = [d.reason["code"] for d in run.actions("signal_dropped")]
    assert codes == ["not_owner", "not_owner", "token"]
    assert run.actions("reject") == []  # quietly: a tool sends these every few seconds


async def test_nothing_is_sent_on_a_channel_type_without_live_signals(run: Run) -> None:
    await run.step(**mail("eve@example.com", "t1", "hello"), at=secs(1))
    (assigned,) = run.actions("assign")
    await run.step(agent=assigned.agent, command="typing", conversation="mail/t1", at=secs(5))
    await run.step(agent=assigned.agent, command="seen", conversation="mail/t1", at=secs(6))
    assert signals(run, "outbound.mail") == []
    assert [d.reason["code"] for d in run.actions("signal_dropped")] == ["not_live"] * 2
