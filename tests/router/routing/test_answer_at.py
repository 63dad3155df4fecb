"""Answering a chat visitor also at the email they agreed to, and the transcript by email:
the router's side (router.routing.answer_at), on the routing scenarios' config with the
chat's `answer_by_email` naming the mail channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from router.config import ConfigError, parse_config
from router.envelope import Envelope, Sender, StatedIdentity, encode, envelope_id
from router.routing.answer_at import WORDS, transcript_text
from router.simulate import Simulation
from router.store import open_store
from router.store import routing as db
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail

ENV = {"P": "secret", "T": "token"}
VISITOR = "v-1"
EVA = "eva@shop.test"


def config_text(answer_by: str | None = "mail") -> str:
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace(
        "  - name: mail\n    type: email\n    enabled: false", "  - name: mail\n    type: email", 1
    )
    if answer_by is not None:
        text = text.replace(
            "webchat: {path: /chat}", f"webchat: {{path: /chat, answer_by_email: {answer_by}}}"
        )
    return text


async def started(tmp_path: Path, text: str) -> Run:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    sim = Simulation(parse_config(text, env=ENV), store)
    await sim.start(datetime.fromisoformat(T0))
    return Run(sim, [])


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    run = await started(tmp_path, config_text())
    yield run
    await run.sim.store.close()


def visit(
    run: Run, cid: str, text: str = "", *, agreed: bool = True, **parts: Any
) -> dict[str, Any]:
    """A visitor's message (or request) as the webchat connector writes it."""
    env = Envelope(
        id=envelope_id("chat", f"{VISITOR}:{cid}"),
        kind="message",
        direction="in",
        channel="chat",
        channel_type="webchat",
        thread_key=VISITOR,
        sender=Sender(address=VISITOR, name="Eva", role="customer"),
        received_at=run.sim.clock,
        text=text,
        identities=[StatedIdentity(kind="email", value=EVA)],
        answer_at=StatedIdentity(kind="email", value=EVA) if agreed else None,
        reply_context={"visitor": VISITOR},
        **parts,
    )
    event: dict[str, Any] = orjson.loads(encode(env))
    return event


async def chat_with_ana(run: Run, *, agreed: bool = True) -> str:
    """Eva writes in the chat (agreeing to email answers, or not); the agent answers.
    The agent's id."""
    await run.step(**visit(run, "c1", "Where is my teapot?", agreed=agreed))
    [assign] = run.actions("assign")
    assert assign.agent is not None
    await run.step(at=at(2), agent=assign.agent, reply="It ships today.", conversation="chat/v-1")
    return assign.agent


async def test_an_agent_s_reply_also_goes_by_email_threaded_when_the_visitor_agreed(
    run: Run,
) -> None:
    await chat_with_ana(run)
    [acked, joined, chat] = run.out("outbound.chat")
    assert joined.signal == "assigned"  # who has the chat, before the reply
    assert (acked.meta["purpose"], chat.text) == ("ack", "It ships today.")
    [mailed] = run.out("outbound.mail")
    assert (mailed.channel, mailed.channel_type, mailed.kind) == ("mail", "email", "reply")
    assert mailed.text == "It ships today." and mailed.sender.role == "agent"
    assert mailed.conversation_id == chat.conversation_id
    # A thread of ours, unguessable, on the mail channel's domain; addressed to Eva.
    assert mailed.thread_key.startswith("<omni.thread.")
    assert mailed.thread_key.endswith("@corp.test>")
    assert mailed.reply_context == {"to": [EVA], "message_id": None, "references": []}
    # The conversation's ref: the email's subject token and plus-address.
    assert mailed.meta["conversation_ref"] == chat.meta["conversation_ref"]
    assert mailed.subject == "Your conversation with us"
    # The chat's own thread facts are untouched.
    assert chat.reply_context == {"visitor": VISITOR}
    # Stored once: the transcript shows the reply once.
    [reply_out] = run.actions("reply_out")
    assert [d.reason for d in run.actions("answer_at")] == [{"channel": "mail", "purpose": "reply"}]
    assert reply_out.conversation_id == chat.conversation_id
    # The address is personal data: no decision (they are logged) names it.
    assert EVA not in str([d.as_json() for d in run.decisions])


async def test_without_consent_nothing_goes_by_email(run: Run) -> None:
    await chat_with_ana(run, agreed=False)
    assert run.out("outbound.mail") == []
    assert len(run.out("outbound.chat")) == 3  # the ack, who has it, the reply


async def test_the_customer_s_email_answer_joins_the_chat_conversation(run: Run) -> None:
    agent = await chat_with_ana(run)
    [first] = run.out("outbound.mail")
    thread = first.thread_key
    answer = mail(EVA, thread, "Thanks! Which carrier?", message_id="<r1@shop.test>")
    answer["reply_context"] = {
        "to": [EVA],
        "message_id": "<r1@shop.test>",
        "references": [thread, "<r1@shop.test>"],
    }
    await run.step(at=at(5), **answer)
    [joined] = run.actions("joined")
    assert joined.conversation_id == first.conversation_id
    # No new conversation: the owner hears of it in the chat's conversation.
    assert [d.conversation_id for d in run.actions("deliver")][-1] == first.conversation_id
    assert run.actions("assign")[1:] == []
    context = run.out("agent.mail")[-1].delivery
    assert context is not None
    texts = [m["text"] for m in context.context["transcript"]]
    assert texts[-1] == "Thanks! Which carrier?"
    # The next answer replies to Eva's email, in the same thread.
    await run.step(at=at(6), agent=agent, reply="DHL.", conversation="chat/v-1")
    second = run.out("outbound.mail")[-1]
    assert second.thread_key == thread
    assert second.reply_context["message_id"] == "<r1@shop.test>"
    assert run.out("outbound.chat")[-1].reply_context == {"visitor": VISITOR}


async def test_a_stranger_in_the_thread_joins_nothing(run: Run) -> None:
    await chat_with_ana(run)
    [first] = run.out("outbound.mail")
    await run.step(at=at(5), **mail("mallory@evil.test", first.thread_key, "let me in"))
    assert run.actions("joined") == []
    [not_joined] = run.actions("not_joined")
    assert "another address" in not_joined.reason["detail"]
    opened = [d for d in run.actions("assign") if d.conversation_id != first.conversation_id]
    assert len(opened) == 1  # a conversation of its own on the mail channel
    # Eva's own answer in the thread still joins the chat's, not the stranger's.
    await run.step(at=at(6), **mail(EVA, first.thread_key, "Any news?", message_id="<r2@x>"))
    [joined] = run.actions("joined")
    assert joined.conversation_id == first.conversation_id


async def test_the_transcript_goes_by_email_in_order_with_both_sides(run: Run) -> None:
    agent = await chat_with_ana(run)
    await run.step(agent=agent, command="note", args=["VIP: be kind"], conversation="chat/v-1")
    await run.step(at=at(3))  # the clock first: the visitor's message is stamped now
    await run.step(**visit(run, "c2", "Great, thanks"))
    await run.step(at=at(4), **visit(run, "t1", request="transcript"))
    mailed = run.out("outbound.mail")[-1]
    assert mailed.meta["purpose"] == "transcript"
    assert mailed.subject == "Transcript of your conversation"
    assert mailed.reply_context["to"] == [EVA]
    assert mailed.thread_key == run.out("outbound.mail")[0].thread_key  # one thread
    assert mailed.text == (
        "[2026-03-02 10:00 UTC] You:\nWhere is my teapot?\n\n"
        "[2026-03-02 10:02 UTC] Ana:\nIt ships today.\n\n"
        "[2026-03-02 10:03 UTC] You:\nGreat, thanks\n"
    )
    told = run.out("outbound.chat")[-1]
    assert told.meta["purpose"] == "transcript_sent"
    assert told.text == f"We have emailed the transcript of this chat to {EVA}."
    # The request is no message for an agent: nothing routed, nothing kept.
    assert run.actions("deliver")[-1].reason.get("rule") == "current_owner"
    async with run.sim.store.transaction(readonly=True) as conn:
        assert told.conversation_id is not None
        rows = await db.transcript(conn, told.conversation_id, 50)
    assert [r.envelope["text"] for r in rows if r.kind == "message"] == [
        "Where is my teapot?",
        "Great, thanks",
    ]


async def test_the_transcript_without_an_agreed_email_is_refused_in_the_chat(run: Run) -> None:
    await chat_with_ana(run, agreed=False)
    await run.step(at=at(4), **visit(run, "t1", agreed=False, request="transcript"))
    assert len(run.out("outbound.mail")) == 0
    told = run.out("outbound.chat")[-1]
    assert told.meta["purpose"] == "transcript_refused"
    assert "give your email" in told.text
    [refused] = run.actions("refuse")
    assert refused.reason == {"request": "transcript", "why": "no_address"}


async def test_the_transcript_without_an_email_channel_is_refused_in_the_chat(
    tmp_path: Path,
) -> None:
    run = await started(tmp_path, config_text(answer_by=None))
    try:
        await chat_with_ana(run)
        assert run.out("outbound.mail") == []  # nothing answers by email either
        await run.step(at=at(4), **visit(run, "t1", request="transcript"))
        told = run.out("outbound.chat")[-1]
        assert told.meta["purpose"] == "transcript_refused"
        assert told.text == "We cannot email transcripts from this chat."
        assert run.actions("refuse")[0].reason["why"] == "no_channel"
    finally:
        await run.sim.store.close()


@pytest.mark.parametrize(
    ("answer_by", "says"),
    [
        ("nowhere", "channel 'nowhere' is not defined"),
        ("tg", "channel 'tg' is a telegram channel, which cannot write to an email"),
    ],
)
def test_the_config_check_refuses_a_channel_that_cannot_answer_by_email(
    answer_by: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(answer_by), env=ENV)
    [problem] = [str(p) for p in caught.value.problems]
    assert "channels[2].webchat.answer_by_email" in problem and says in problem


def test_the_config_check_refuses_a_disabled_email_channel() -> None:
    text = config_text().replace(
        "  - name: mail\n    type: email", "  - name: mail\n    type: email\n    enabled: false", 1
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=ENV)
    [problem] = [str(p) for p in caught.value.problems]
    assert "channel 'mail' is disabled: nothing would send the answers" in problem


def test_a_long_transcript_leaves_out_the_oldest_messages_and_says_so() -> None:
    rows = [
        SimpleNamespace(
            kind="message",
            direction="in",
            envelope={
                "sender": {"role": "customer"},
                "received_at": f"2026-03-02T10:{n:02d}:00+00:00",
                "text": f"message {n} " + "x" * 100,
            },
        )
        for n in range(50)
    ]
    text = transcript_text(rows, "Europe/Madrid", WORDS["es"], budget=1000)
    assert len(text.encode()) <= 1000
    assert text.startswith("(mensajes anteriores omitidos)\n[2026-03-02 11:")
    assert "message 49" in text and "message 0 " not in text
    assert "Tú:" in text  # the customer, in their language
