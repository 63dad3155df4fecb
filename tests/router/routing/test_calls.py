"""Calls through the router: callbacks owed for missed calls, answered calls, call outcomes.

The router reads only the envelope's `call` part; the channel here is a phone
line added to the routing scenarios' config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.config import parse_config
from router.envelope import Call, Envelope, Sender, StatedIdentity, encode, envelope_id
from router.simulate import Simulation
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail

LINE = "line"
EVA_PHONE = "+34600111222"
PHONE_CHANNEL = f"""  - name: {LINE}
    type: phone
    enabled: false
    phone: {{webhook_path: null, default_region: ES}}
"""


def calls_config() -> Any:
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace(
        "skills:\n  - name: billing", PHONE_CHANNEL + "skills:\n  - name: billing", 1
    )
    text = text.replace(
        "capacity: {email: 1, telegram: 1, webchat: 1}",
        "capacity: {email: 1, telegram: 1, webchat: 1, phone: 1}",
    )
    return parse_config(text, env={})


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    sim = Simulation(calls_config(), store)
    await sim.start(datetime.fromisoformat(T0))
    yield Run(sim, [])
    await store.close()


def call(
    run: Run,
    call_id: str,
    disposition: str | None,
    *,
    number: str = EVA_PHONE,
    direction: str = "inbound",
    agent: str | None = None,
) -> dict[str, Any]:
    """A call envelope as the phone connector writes it, as the simulation takes it."""
    env = Envelope(
        id=envelope_id(LINE, call_id),
        kind="call",
        direction="in",
        channel=LINE,
        channel_type="phone",
        thread_key=number,
        sender=Sender(address=number, role="customer"),
        received_at=run.sim.clock,
        text=f"{disposition} {direction} call",
        call=Call(
            id=call_id,
            direction=direction,  # type: ignore[arg-type]
            disposition=disposition,  # type: ignore[arg-type]
            started_at=run.sim.clock,
            wait=30,
            agent=agent,
        ),
    )
    event: dict[str, Any] = orjson.loads(encode(env))
    return event


def conv_of(run: Run, action: str) -> str:
    [d] = run.actions(action)
    assert d.conversation_id is not None
    return d.conversation_id


async def eva_known_by_email(run: Run) -> str:
    """Eva wrote by email (Ana has it); Ana links her phone number. The mail conversation."""
    await run.step(**mail("eva@shop.test", "<t1@x>", "question about my invoice"))
    await run.step(
        agent="ana", command="link", args=["phone", EVA_PHONE], conversation="mail/<t1@x>"
    )
    await run.step(agent="ana", command="resolve", conversation="mail/<t1@x>")
    return run.actions("assign")[0].conversation_id or ""


async def test_a_missed_call_opens_a_callback_with_the_customer_s_email_history(run: Run) -> None:
    mail_conv = await eva_known_by_email(run)
    await run.step(at=at(10), **call(run, "c1", "missed"))
    callback = conv_of(run, "callback_open")
    assert callback != mail_conv
    [assign] = [d for d in run.actions("assign") if d.conversation_id == callback]
    assert assign.agent == "ana"  # the agent who last served Eva
    delivery = run.out("agent.mail")[-1].delivery
    assert delivery is not None
    assert delivery.event == "assigned"
    context = delivery.model_dump(mode="json")["context"]
    # Done-when: the callback's assignment carries the email conversation itself.
    [other] = context["other_conversations"]
    first = run.out("agent.mail")[0].delivery  # Eva's email, as it reached Ana
    assert first is not None
    assert (other["channel"], other["status"]) == ("mail", "resolved")
    assert other["ref"] == first.context["conversation"]["ref"]
    assert {"kind": "email", "value": "eva@shop.test"} in context["customer"]["identities"]
    # The phone type's declared target: a missed call is returned within the hour.
    assert delivery.sla_due == datetime.fromisoformat(at(10)) + timedelta(hours=1)
    assert "callback" in context["conversation"]["tags"]
    assert context["conversation"]["callback"]["tel"] == f"tel:{EVA_PHONE}"
    assert f"Call back: tel:{EVA_PHONE}" in run.out("agent.mail")[-1].text


async def test_three_missed_calls_make_one_callback_with_raised_priority(run: Run) -> None:
    await run.step(**call(run, "c1", "missed"))
    await run.step(at=at(3), **call(run, "c2", "abandoned"))
    await run.step(at=at(6), **call(run, "c3", "voicemail"))
    callback = conv_of(run, "callback_open")
    joins = run.actions("callback_join")
    assert [d.conversation_id for d in joins] == [callback, callback]
    assert [d.priority for d in joins] == ["high", "urgent"]
    assert [d.reason["calls"] for d in joins] == [2, 3]
    # The first-response target tightens with the priority, from the first call on:
    # the phone type's high (30m), then urgent (15m) target.
    assert [d.reason["due"] for d in joins] == [at(30), at(15)]


async def test_an_answered_inbound_call_closes_the_callback_and_its_agent_owns_it(
    run: Run,
) -> None:
    await run.step(**call(run, "c1", "missed"))
    callback = conv_of(run, "callback_open")
    assert run.actions("assign")[0].agent == "ana"
    await run.step(at=at(5), **call(run, "c2", "answered", agent="ben"))
    [owner] = run.actions("owner")
    assert (owner.conversation_id, owner.agent) == (callback, "ben")
    [closed] = run.actions("callback_closed")
    assert closed.reason == {"by": "answered inbound call"}
    # Nothing is owed now: no first-response breach an hour later.
    await run.step(at=at(120))
    assert not run.actions("breach")


async def test_no_answer_retries_then_tells_the_customer_by_email_and_records_an_incident(
    run: Run,
) -> None:
    await eva_known_by_email(run)
    await run.step(at=at(10), **call(run, "c1", "missed"))
    conv = f"{LINE}/{EVA_PHONE}"
    mails_before = len(run.out("outbound.mail"))
    await run.step(agent="ana", command="no-answer", conversation=conv, id="try-1")
    [retry] = run.actions("callback_retry")
    assert retry.reason["attempts"] == 1
    # After routing.callbacks.retry_after (15m) Ana is reminded to call again.
    await run.step(at=at(26))
    [due] = run.actions("callback_retry_due")
    assert due.agent == "ana"
    await run.step(agent="ana", command="no-answer", conversation=conv, id="try-2")
    await run.step(agent="ana", command="no-answer", conversation=conv, id="try-3")
    [unreached] = run.actions("callback_unreached")
    assert unreached.reason == {"attempts": 3, "told_on": "mail"}
    [told] = run.out("outbound.mail")[mails_before:]
    assert told.thread_key == "<t1@x>" and "tried to call you back 3 times" in told.text
    assert [(i.kind, i.details["attempts"]) for i in await run.incidents()] == [
        ("callback_unreached", 3)
    ]


async def test_no_answer_without_another_channel_records_the_incident_only(run: Run) -> None:
    await run.step(**call(run, "c1", "missed"))
    for n in range(3):
        await run.step(
            agent="ana", command="no-answer", conversation=f"{LINE}/{EVA_PHONE}", id=f"try-{n}"
        )
    [unreached] = run.actions("callback_unreached")
    assert unreached.reason["told_on"] is None
    assert [(i.kind, i.details["attempts"]) for i in await run.incidents()] == [
        ("callback_unreached", 3)
    ]


@pytest.mark.parametrize(
    ("command", "args", "resolved"),
    [("called", ["resolve"], True), ("called", [], False), ("wrong-number", [], True)],
)
async def test_called_and_wrong_number_close_the_callback(
    run: Run, command: str, args: list[str], resolved: bool
) -> None:
    await run.step(**call(run, "c1", "missed"))
    await run.step(agent="ana", command=command, args=args, conversation=f"{LINE}/{EVA_PHONE}")
    assert len(run.actions("callback_closed")) == 1
    assert bool(run.actions("resolve")) is resolved
    # A missed call after it opens a new callback.
    await run.step(at=at(5), **call(run, "c2", "missed"))
    assert len(run.actions("callback_open")) == 2


async def test_an_outcome_without_an_open_callback_is_ignored(run: Run) -> None:
    await run.step(**call(run, "c1", "answered", agent="ana"))
    await run.step(agent="ana", command="no-answer", conversation=f"{LINE}/{EVA_PHONE}")
    assert run.actions("callback_retry") == []
    assert (
        run.actions("ignore")[-1].reason["detail"]
        == "no-answer: no open callback on this conversation"
    )


async def test_the_same_call_twice_is_one(run: Run) -> None:
    await run.step(**call(run, "c1", "missed"))
    again = await run.step(**call(run, "c1", "missed"))
    assert [d.action for d in again] == ["duplicate"]
    assert run.actions("callback_join") == []


async def test_resolving_the_conversation_ends_its_callback(run: Run) -> None:
    await run.step(**call(run, "c1", "missed"))
    conv = f"{LINE}/{EVA_PHONE}"
    await run.step(agent="ana", command="no-answer", conversation=conv, id="try-1")
    await run.step(agent="ana", command="resolve", conversation=conv)
    # No reminder for a resolved conversation; the next missed call opens a new callback.
    await run.step(at=at(30))
    assert run.actions("callback_retry_due") == []
    await run.step(**call(run, "c2", "missed"))
    assert len(run.actions("callback_open")) == 2
    assert run.actions("callback_join") == []


# --- "call me back" asked on another channel ------------------------------------------------


def call_me_back(run: Run, cid: str, phone: str, *, visitor: str = "v-1") -> dict[str, Any]:
    """A web chat visitor's "call me back", as the webchat connector writes it."""
    env = Envelope(
        id=envelope_id("chat", f"{visitor}:{cid}"),
        kind="call",
        direction="in",
        channel="chat",
        channel_type="webchat",
        thread_key=visitor,
        sender=Sender(address=visitor, role="customer"),
        received_at=run.sim.clock,
        text=f"Please call me back on {phone}",
        identities=[StatedIdentity(kind="phone", value=phone)],
        reply_context={"visitor": visitor},
        call=Call(id=f"webchat:{visitor}:{cid}", direction="inbound", disposition="requested"),
    )
    event: dict[str, Any] = orjson.loads(encode(env))
    return event


async def test_call_me_back_in_the_chat_opens_a_callback_on_the_phone_line(run: Run) -> None:
    await eva_known_by_email(run)
    # A national number: read with the phone line's region (ES), not the chat's (none).
    await run.step(at=at(10), **call_me_back(run, "cb1", "600 111 222"))
    callback = conv_of(run, "callback_open")
    [assign] = [d for d in run.actions("assign") if d.conversation_id == callback]
    assert assign.agent == "ana"  # the agent who last served Eva, whose number it is
    delivery = run.out("agent.mail")[-1].delivery
    assert delivery is not None
    context = delivery.model_dump(mode="json")["context"]
    assert context["conversation"]["channel"] == LINE
    assert context["conversation"]["callback"]["tel"] == f"tel:{EVA_PHONE}"
    assert delivery.sla_due == datetime.fromisoformat(at(10)) + timedelta(hours=1)
    # The visitor is told in the chat; the chat opened only to ask is resolved.
    [told] = run.out("outbound.chat")
    assert told.meta["purpose"] == "callback_requested"
    assert f"call you back on {EVA_PHONE} (ref {context['conversation']['ref']})" in told.text
    [resolved] = run.actions("resolve")[-1:]
    assert resolved.reason == {"by": "callback request"} and resolved.conversation_id != callback
    # Asking again (or a missed call meanwhile) joins it: one callback, raised priority.
    await run.step(at=at(12), **call_me_back(run, "cb2", EVA_PHONE))
    await run.step(at=at(13), **call(run, "c1", "missed"))
    assert [d.conversation_id for d in run.actions("callback_join")] == [callback, callback]
    assert len(run.actions("callback_open")) == 1


async def test_call_me_back_with_an_unreadable_number_is_answered_in_the_chat(run: Run) -> None:
    await run.step(**call_me_back(run, "cb1", "call me maybe"))
    assert run.actions("callback_open") == []
    [told] = run.out("outbound.chat")
    assert told.meta["purpose"] == "callback_refused"
    assert "could not read 'call me maybe'" in told.text
    # The chat opened only to ask owes nothing; writing again reopens it.
    assert [d.reason for d in run.actions("resolve")] == [{"by": "callback request"}]


async def test_without_a_channel_that_carries_callbacks_it_lives_in_the_chat(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        sim = Simulation(parse_config(CONFIG.read_text(encoding="utf-8"), env={}), store)
        await sim.start(datetime.fromisoformat(T0))
        run = Run(sim, [])
        await run.step(**call_me_back(run, "cb1", "+34600111222"))
        [opened] = run.actions("callback_open")
        [assign] = run.actions("assign")
        assert assign.conversation_id == opened.conversation_id
        assert run.actions("resolve") == []
        assert [e.meta["purpose"] for e in run.out("outbound.chat")][-1] == "callback_requested"
        # Resolved, then asked again: the chat reopens with a new callback.
        await run.step(agent=assign.agent, command="resolve", conversation="chat/v-1", id="done-1")
        await run.step(at=at(30), **call_me_back(run, "cb2", "+34600111222"))
        assert [d.reason for d in run.actions("reopen")] == [{"detail": "callback requested"}]
        assert len(run.actions("callback_open")) == 2
    finally:
        await store.close()
