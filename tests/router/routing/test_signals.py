"""Live signals from a conversation's agent to its customer: `typing` and `seen`
(router/routing/signals.py)."""

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


def signals(run: Run, topic: str = "outbound.chat") -> list[Envelope]:
    return [e for e in run.out(topic) if e.signal is not None]


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
