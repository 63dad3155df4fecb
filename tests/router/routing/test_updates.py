"""Regular updates while a customer waits for an answer (router/routing/updates.py),
with simulate's clock walking through the intervals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.envelope import Envelope
from tests.router.routing.office import scenario
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    config = yaml.safe_load(CONFIG.read_text())
    every = {"chat": "3m", "mail": "24h"}
    for channel in config["channels"]:
        if channel["name"] in every:
            channel["update_every"] = every[channel["name"]]
    path = tmp_path / "updates.yaml"
    path.write_text(yaml.safe_dump(config))
    async with scenario(tmp_path, T0, path) as r:
        yield r


def chat(visitor: str, minutes: float) -> dict[str, Any]:
    return {"channel": "chat", "from": visitor, "thread": visitor, "text": "hi", "at": at(minutes)}


def updates(run: Run, topic: str, thread: str) -> list[Envelope]:
    return [
        e for e in run.out(topic) if e.meta.get("purpose") == "update" and e.thread_key == thread
    ]


async def test_a_queued_chat_hears_its_position_every_interval_and_nothing_once_answered(
    run: Run,
) -> None:
    await run.step(**chat("v1", 0))
    await run.step(**chat("v2", 0.1))
    await run.step(**chat("v3", 0.2))  # Ana and Ben hold one chat each: v3 waits
    assert [d.conversation_id for d in run.actions("queue")]
    await run.step(at=at(2.9))
    assert updates(run, "outbound.chat", "v3") == []  # not before the interval
    await run.step(at=at(6.5))
    told = updates(run, "outbound.chat", "v3")
    assert [(e.standing.position if e.standing else None) for e in told] == [1, 1]
    assert [e.received_at.isoformat() for e in told] == [at(3.2), at(6.2)]
    assert all(e.text == "" for e in told)  # the widget shows the position live
    # Ana resolves v1: v3 is hers; she answers it, and nothing more is told.
    await run.step(agent="ana", command="resolve", conversation="chat/v1", at=at(7))
    assert run.actions("assign")[-1].agent == "ana"
    await run.step(agent="ana", reply="Hello, I am here", conversation="chat/v3", at=at(8))
    await run.step(at=at(30))
    assert len(updates(run, "outbound.chat", "v3")) == 2
    skipped = [d for d in run.actions("update_skipped")]
    assert skipped and skipped[-1].reason == {"detail": "answered"}


async def test_an_unanswered_email_is_told_once_per_interval_until_an_agent_answers(
    run: Run,
) -> None:
    await run.step(**mail("eve@example.com", "t1", "where is my parcel?"), at=at(0))
    await run.step(at=at(23 * 60 + 59))
    assert updates(run, "outbound.mail", "t1") == []
    await run.step(at=at(49 * 60))
    told = updates(run, "outbound.mail", "t1")
    assert len(told) == 2
    # Past the first-response target: no time is promised that is already gone.
    assert told[0].text.startswith("We are still on it, Eve: we expect to answer as soon as")
    assert told[0].reply_context == {"to": ["eve@example.com"], "message_id": "t1"}
    owner = run.actions("assign")[0].agent
    await run.step(agent=owner, reply="It ships today.", conversation="mail/t1", at=at(50 * 60))
    await run.step(at=at(100 * 60))
    assert len(updates(run, "outbound.mail", "t1")) == 2
    # She writes again and waits: told again one interval later, and only once by then.
    await run.step(**mail("eve@example.com", "t1", "thanks, and the invoice?"), at=at(101 * 60))
    await run.step(**mail("eve@example.com", "t1", "hello?"), at=at(110 * 60))
    await run.step(at=at(125 * 60 + 1))
    assert len(updates(run, "outbound.mail", "t1")) == 3


async def test_a_spanish_customer_is_told_in_spanish(run: Run) -> None:
    await run.step(**mail("ana.g@example.es", "t2", "hola, ¿dónde está mi pedido? gracias"))
    await run.step(at=at(24 * 60 + 1))
    (told,) = updates(run, "outbound.mail", "t2")
    assert told.text.startswith("Seguimos con tu caso")


async def test_no_updates_without_update_every(tmp_path: Path) -> None:
    async with scenario(tmp_path, T0, CONFIG) as run:
        await run.step(**mail("eve@example.com", "t1", "hello"), at=at(0))
        await run.step(at=at(72 * 60))
        assert updates(run, "outbound.mail", "t1") == []
