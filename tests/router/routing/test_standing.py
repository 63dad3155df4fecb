"""Where a waiting customer stands: in the acknowledgement, and told again live where the
channel type asks for it (router/routing/standing.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from router.envelope import Envelope
from router.routing.standing import LOOK_AHEAD
from router.simulate.outputs import Output
from router.store import routing as db
from tests.router.routing.scenarios import T0, Run, at, mail

START = datetime.fromisoformat(T0)


def chat(visitor: str, text: str = "hello", **kw: Any) -> dict[str, Any]:
    return {"channel": "chat", "from": visitor, "thread": visitor, "text": text, **kw}


def secs(s: float) -> str:
    return (START + timedelta(seconds=s)).isoformat()


def told(run: Run, thread: str, purpose: str = "standing") -> list[int]:
    """The positions a conversation's customer was told, in order."""
    return [
        e.standing.position
        for e in run.out("outbound.chat")
        if e.thread_key == thread and e.meta.get("purpose") == purpose and e.standing
    ]


def acks(run: Run, topic: str) -> dict[str, Envelope]:
    return {e.thread_key: e for e in run.out(topic) if e.meta.get("purpose") == "ack"}


async def five_chats(run: Run) -> None:
    """Ana and Ben take one chat each (capacity 1); v3, v4, v5 wait in `general`."""
    for i in range(1, 6):
        await run.step(**chat(f"v{i}"), at=secs(i))
    assert len(run.actions("assign")) == 2
    assert len(run.actions("queue")) == 3


async def test_the_acknowledgement_carries_position_queue_and_promised_wait(run: Run) -> None:
    await five_chats(run)
    ack = acks(run, "outbound.chat")
    assert ack["v1"].standing is None and ack["v2"].standing is None  # an agent has them
    for visitor, position in (("v3", 1), ("v4", 2), ("v5", 3)):
        standing = ack[visitor].standing
        assert standing is not None
        assert (standing.position, standing.queue) == (position, "general")
        # Chat's normal target: 5 minutes from the message, as the text promises.
        assert standing.due == ack[visitor].received_at + timedelta(minutes=5)
        assert standing.wait == 300
        assert "within 5 minutes" in ack[visitor].text


async def test_an_assignment_ahead_is_told_to_those_behind(run: Run) -> None:
    await five_chats(run)
    await run.step(agent="ana", command="resolve", conversation="chat/v1", at=secs(60))
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben", "ana"]  # v3 to Ana
    await run.step(at=secs(61))  # the standing timers fire
    assert told(run, "v4") == [1] and told(run, "v5") == [2]
    assert told(run, "v3") == []  # an agent has it now: nothing more
    update = next(e for e in run.out("outbound.chat") if e.meta.get("purpose") == "standing")
    assert update.text == "" and update.automated is not None and update.automated.auto
    assert update.standing is not None and update.standing.wait == 300 - 60 + 4
    assert [d.reason["was"] for d in run.actions("standing")] == [2, 3]
    # `simulate` shows each update as an output, with where the customer stands.
    shown = [
        (e.conversation, e.item.fields["standing"]["position"])
        for e in run.sim.timeline
        if isinstance(e.item, Output) and e.item.fields.get("purpose") == "standing"
    ]
    assert shown == [("chat/v4", 1), ("chat/v5", 2)]
    # Not in the transcript: the agent's context shows what was said, not every position.
    async with run.sim.store.transaction(readonly=True) as conn:
        conv = await db.conversation_by_thread(conn, "chat", "v4")
        assert conv is not None
        rows = await db.transcript(conn, conv.id, 50)
    purposes = [r.envelope.get("meta", {}).get("purpose") for r in rows]
    assert "standing" not in purposes and "ack" in purposes


async def test_a_conversation_queued_ahead_by_priority_is_told_to_those_behind(run: Run) -> None:
    await five_chats(run)
    await run.step(**chat("v6", "urgent please"), at=secs(40))
    assert acks(run, "outbound.chat")["v6"].standing.position == 1  # type: ignore[union-attr]
    await run.step(at=secs(41))
    assert (told(run, "v3"), told(run, "v4"), told(run, "v5")) == ([2], [3], [4])


async def test_updates_are_throttled_and_a_change_meanwhile_is_told_when_it_ends(
    run: Run,
) -> None:
    await five_chats(run)  # acknowledged at 3, 4, 5 s as number 1, 2, 3
    await run.step(agent="ana", command="resolve", conversation="chat/v1", at=secs(10))
    # v3 went to Ana; v4 and v5 moved up, within 20 s (routing.standing_interval) of
    # their acknowledgements: each is told when its interval ends.
    await run.step(at=secs(23.9))
    assert (told(run, "v4"), told(run, "v5")) == ([], [])
    await run.step(at=secs(24))
    assert (told(run, "v4"), told(run, "v5")) == ([1], [])
    await run.step(at=secs(25))
    assert told(run, "v5") == [2]
    # Two changes within v5's next interval: v4 goes to Ben (v5 is 1), an urgent chat
    # comes ahead (v5 is 2 again): one look when the interval ends, nothing new to say.
    await run.step(agent="ben", command="resolve", conversation="chat/v2", at=secs(30))
    await run.step(**chat("v6", "urgent please"), at=secs(31))
    await run.step(at=secs(45))
    assert told(run, "v5") == [2]
    # The next change is told at once: the interval since the last telling has passed.
    await run.step(agent="ana", command="resolve", conversation="chat/v3", at=secs(50))
    await run.step(at=secs(50.001))
    assert told(run, "v5") == [2, 1]


async def test_nothing_is_told_once_an_agent_has_it(run: Run) -> None:
    await five_chats(run)
    # v4's timer is due 20 s after its ack (4 s); before then an agent takes it.
    await run.step(agent="ana", command="resolve", conversation="chat/v1", at=secs(10))
    await run.step(agent="ben", command="resolve", conversation="chat/v2", at=secs(11))
    assigned = {d.conversation_id for d in run.actions("assign")}
    async with run.sim.store.transaction(readonly=True) as conn:
        v4 = await db.conversation_by_thread(conn, "chat", "v4")
    assert v4 is not None and v4.id in assigned
    await run.step(at=secs(120))
    assert told(run, "v4") == []
    assert told(run, "v5") == [1]


async def test_a_type_without_live_standing_gets_no_update(run: Run) -> None:
    for i in range(1, 5):
        await run.step(**mail(f"c{i}@shop.test", f"<m{i}@x>", "hello"), at=secs(i))
    ack = acks(run, "outbound.mail")
    # The acknowledgement carries the facts on every channel type...
    assert ack["<m4@x>"].standing is not None and ack["<m4@x>"].standing.position == 2
    await run.step(agent="ana", command="resolve", conversation="mail/<m1@x>", at=secs(60))
    await run.step(at=at(10))
    # ...but only a type that declares `live_standing` is told again.
    purposes = [e.meta.get("purpose") for e in run.out("outbound.mail")]
    assert "standing" not in purposes
    assert run.actions("standing") == []


async def test_only_the_head_of_a_long_line_is_looked_at(run: Run) -> None:
    for i in range(1, LOOK_AHEAD + 5):
        await run.step(**chat(f"w{i}"), at=secs(i))
    await run.step(agent="ana", command="resolve", conversation="chat/w1", at=secs(60))
    await run.step(at=secs(61))
    # Ana and Ben took w1 and w2, then w3 went to Ana: all behind it moved up, and
    # the first LOOK_AHEAD of them (w4 ...) are told; the rest hear once they get there.
    told_now = [d.conversation_id for d in run.actions("standing")]
    async with run.sim.store.transaction(readonly=True) as conn:
        head = await db.waiting_in(conn, "general", "webchat", LOOK_AHEAD + 5)
    assert told_now == [c.id for c in head[:LOOK_AHEAD]]
    assert len(head) == LOOK_AHEAD + 1
