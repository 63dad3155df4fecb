"""SLA instants in business time, and a queue's `overflow_after` (router/routing/timers.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from router.config import parse_config
from router.errors import ConfigError
from tests.router.routing.office import OFFICE, SHIPPED, scenario, timer_rows
from tests.router.routing.scenarios import Run, mail


def chat(text: str, **kw: str) -> dict[str, str]:
    return {"channel": "site-chat", "from": "visitor-1", "thread": "s1", "text": text, **kw}


async def test_a_chat_just_before_the_weekend_is_warned_about_after_opening(
    tmp_path: Path,
) -> None:
    # Shipped config: site-chat on office hours (Friday 09:00-15:00 in Madrid), a
    # 5-minute target, a warning at 0.8. Friday 14:58 leaves 2 open minutes: the
    # warning (4 open minutes) is Monday 09:02, the breach Monday 09:03.
    async with scenario(tmp_path, "2026-03-06T14:50:00+01:00", SHIPPED) as run:
        await run.step(**chat("Hi, where is my order?", at="2026-03-06T14:58:00+01:00"))
        [ack] = run.actions("ack")
        assert datetime.fromisoformat(ack.reason["due"]) == datetime.fromisoformat(
            "2026-03-09T09:03:00+01:00"
        )
        await run.step(at="2026-03-08T21:00:00+01:00")  # Sunday evening
        await run.step(at="2026-03-09T09:01:59+01:00")
        assert run.actions("escalate") == [] and run.actions("breach") == []
        purposes = [e.meta.get("purpose") for e in run.out("outbound.site-chat")]
        assert purposes == ["ack", "assigned"]  # an agent on shift took it at once
        await run.step(at="2026-03-09T09:02:00+01:00")
        [escalate] = run.actions("escalate")
        assert escalate.reason["supervisors"] == ["ana"]
        [on_it] = [e for e in run.out("outbound.site-chat") if e.meta.get("purpose") == "on_it"]
        assert on_it.text.startswith("We are on it")
        assert run.actions("breach") == []
        await run.step(at="2026-03-09T09:03:00+01:00")
        assert len(run.actions("breach")) == 1


async def waiting_in_vip(run: Run, at: str) -> str:
    """Ana (the only agent good enough for vip) busy; a second vip mail waits. Its id."""
    await run.step(**mail("first@shop.test", "<a@x>", "premium support please", at=at))
    assert [d.agent for d in run.actions("assign")] == ["ana"]
    await run.step(**mail("second@shop.test", "<b@x>", "premium question"))
    [queued] = run.actions("queue")
    assert queued.queue == "vip"
    assert queued.conversation_id is not None
    return queued.conversation_id


async def test_overflow_after_moves_a_long_wait_to_the_overflow_queue(tmp_path: Path) -> None:
    async with scenario(tmp_path, "2026-03-02T09:00:00+01:00") as run:  # a Monday
        conv = await waiting_in_vip(run, "2026-03-02T10:00:00+01:00")
        await run.step(at="2026-03-02T10:29:59+01:00")
        assert run.actions("overflow") == []
        await run.step(at="2026-03-02T10:30:00+01:00")
        [moved] = run.actions("overflow")
        assert moved.conversation_id == conv and moved.queue == "general"
        assert moved.reason["rule"] == "overflow_after"
        assert (moved.reason["from"], moved.reason["to"]) == ("vip", "general")
        # Routed at once in the overflow queue: Ben qualifies there.
        [second] = [d for d in run.actions("assign") if d.conversation_id == conv]
        assert (second.agent, second.queue) == ("ben", "general")
        # Scheduled once for this wait in vip.
        assert len(await timer_rows(run, "overflow")) == 1


async def test_overflow_after_counts_open_time(tmp_path: Path) -> None:
    # Waiting from Monday 17:50: 10 open minutes that day, 20 on Tuesday from 09:00.
    async with scenario(tmp_path, "2026-03-02T09:00:00+01:00") as run:
        await waiting_in_vip(run, "2026-03-02T17:50:00+01:00")
        await run.step(at="2026-03-03T09:19:59+01:00")
        assert run.actions("overflow") == []
        await run.step(at="2026-03-03T09:20:00+01:00")
        assert len(run.actions("overflow")) == 1


async def test_overflow_timer_is_cancelled_when_the_conversation_is_assigned(
    tmp_path: Path,
) -> None:
    async with scenario(tmp_path, "2026-03-02T09:00:00+01:00") as run:
        conv = await waiting_in_vip(run, "2026-03-02T10:00:00+01:00")
        [timer] = await timer_rows(run, "overflow")
        assert timer.cancelled_at is None
        await run.step(
            agent="ana",
            command="resolve",
            conversation="mail/<a@x>",
            at="2026-03-02T10:10:00+01:00",
        )
        assert [d.agent for d in run.actions("assign") if d.conversation_id == conv] == ["ana"]
        [timer] = await timer_rows(run, "overflow")
        assert timer.cancelled_at is not None
        await run.step(at="2026-03-02T11:00:00+01:00")
        assert run.actions("overflow") == []


async def test_sla_warning_leaves_overflow_to_overflow_after(tmp_path: Path) -> None:
    # vip overflows after 7 open hours: the warning (6h24m) escalates but does not move it.
    config = tmp_path / "late-overflow.yaml"
    config.write_text(OFFICE.read_text().replace("overflow_after: 30m", "overflow_after: 7h"))
    async with scenario(tmp_path, "2026-03-02T09:00:00+01:00", config) as run:
        conv = await waiting_in_vip(run, "2026-03-02T10:00:00+01:00")
        await run.step(at="2026-03-02T16:24:00+01:00")
        [escalate] = [e for e in run.actions("escalate") if e.conversation_id == conv]
        assert escalate.reason["overflow"] is None and escalate.queue == "vip"
        await run.step(at="2026-03-02T17:00:00+01:00")
        [moved] = run.actions("overflow")
        assert moved.conversation_id == conv


def test_overflow_after_needs_an_overflow_queue() -> None:
    with pytest.raises(ConfigError, match=r"queues\[0\]\.overflow_after: overflow_after needs"):
        parse_config("version: 1\nqueues: [{name: vip, overflow_after: 30m}]\n", env={})
