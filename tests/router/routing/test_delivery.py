"""Deliveries to agents are bounded by design, whatever the conversation holds, and a
conversation whose agent left the config reaches another agent."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.config import load_config
from router.config.people import BusinessHoursConfig
from router.envelope import Attachment, encode
from router.routing.delivery import PREVIEW_CHARS, RECORD_SHARE, TEXT_LIMIT, TRANSCRIPT_WINDOW
from router.simulate import Simulation
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail


def deliveries(run: Run) -> list[tuple[bytes, dict[str, Any]]]:
    """Each delivery to an agent: its bytes on the bus and its `meta.delivery`."""
    return [
        (encode(e), e.delivery.model_dump(mode="json"))
        for t, e in run.sim.published
        if ".agent." in t
    ]


def summaries(run: Run) -> list[str]:
    return [e.text for t, e in run.sim.published if ".agent." in t]


def budget(run: Run) -> int:
    return int(run.sim.engine.config.bus.max_record_bytes * RECORD_SHARE)


async def test_a_long_email_thread_gives_bounded_deliveries_with_each_text_once(
    run: Run,
) -> None:
    # Six ordinary 90 KB customer messages in one thread (1.08 MB delivery before).
    for i in range(6):
        marker = f"MARKER-{i}-"
        text = ("lorem ipsum " * 700)[:5000] + marker + "x" * (90_000 - 5000 - len(marker))
        await run.step(at=at(i), **mail("eva@shop.test", "<long@x>", text, subject="Refund"))
    sent = deliveries(run)
    assert len(sent) == 6  # the assignment, then each new message to its owner
    for value, _ in sent:
        assert len(value) <= budget(run)
    value, last = sent[-1]
    transcript = last["context"]["transcript"]
    customer = [m for m in transcript if m["direction"] == "in"]
    assert len(customer) == 6
    for m in customer:
        assert len(m["text"]) == TEXT_LIMIT
        assert m["truncated"] == {"length": 90_000, "shown": TEXT_LIMIT}
    # Each text once: in the context; the summary only previews it.
    for i in range(6):
        assert value.count(f"MARKER-{i}-".encode()) == 1
    previews = [line for line in summaries(run)[-1].splitlines() if "lorem" in line]
    assert len(previews) == 6
    assert all(len(line) < PREVIEW_CHARS + 100 for line in previews)
    window = last["context"]["transcript_window"]
    assert window["shown"] == len(transcript) and window["total"] >= 7  # with the ack


async def test_one_700_kb_message_gives_a_delivery_that_fits_the_bus(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<big@x>", "ñ" * 700_000))
    [(value, delivery)] = deliveries(run)
    assert len(value) <= budget(run)
    [m] = [m for m in delivery["context"]["transcript"] if m["direction"] == "in"]
    assert m["truncated"]["length"] == 700_000


async def test_a_conversation_longer_than_the_window_shows_its_latest_messages(
    run: Run,
) -> None:
    for i in range(TRANSCRIPT_WINDOW + 5):
        await run.step(at=at(i), **mail("eva@shop.test", "<many@x>", f"message number {i}"))
    _, last = deliveries(run)[-1]
    texts = [m["text"] for m in last["context"]["transcript"]]
    assert len(texts) == TRANSCRIPT_WINDOW
    assert texts[-1] == f"message number {TRANSCRIPT_WINDOW + 4}"  # the newest is there
    window = last["context"]["transcript_window"]
    assert window["total"] > window["shown"] == TRANSCRIPT_WINDOW


async def test_multibyte_texts_are_dropped_oldest_first_to_fit(run: Run) -> None:
    # 4-byte characters: 20 entries of 8,000 would be 640 KB; the budget here is smaller.
    engine = run.sim.engine
    config = engine.config
    small = config.bus.model_copy(update={"max_record_bytes": 200_000})
    await engine.configure(config.model_copy(update={"bus": small}), run.sim.clock)
    for i in range(12):
        await run.step(at=at(i), **mail("eva@shop.test", "<emoji@x>", f"{i}:" + "😀" * 9_000))
    value, last = deliveries(run)[-1]
    assert len(value) <= budget(run)
    texts = [m["text"] for m in last["context"]["transcript"]]
    assert texts[-1].startswith("11:")  # the newest kept, the oldest dropped
    assert last["context"]["transcript_window"]["shown"] == len(texts) < 12


async def test_a_removed_agents_conversation_reaches_another_agent(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<r@x>", "My invoice is wrong", subject="Invoice"))
    [assign] = run.actions("assign")
    owner = assign.agent
    engine = run.sim.engine
    config = engine.config
    await engine.configure(
        config.model_copy(update={"agents": [a for a in config.agents if a.id != owner]}),
        run.sim.clock,
    )
    await run.step(at=at(5), **mail("eva@shop.test", "<r@x>", "Any news? birthday 1990"))
    [reassign] = run.actions("reassign")
    assert reassign.agent == owner
    assert "no longer configured" in reassign.reason["detail"]
    again = run.actions("assign")[-1]
    assert again.agent not in (None, owner)
    _, last = deliveries(run)[-1]
    assert last["agent"]["id"] == again.agent
    texts = [m["text"] for m in last["context"]["transcript"] if m["direction"] == "in"]
    assert texts == ["My invoice is wrong", "Any news? birthday 1990"]


async def test_the_new_owners_transcript_shows_each_message_once_and_the_transfer(
    run: Run,
) -> None:
    await run.step(agent="ben", command="away")
    await run.step(**mail("eva@shop.test", "<t@x>", "refund please"))
    await run.step(agent="ben", command="available")
    await run.step(at=at(1), agent="ana", reply="Refunded half of it.", conversation="mail/<t@x>")
    await run.step(
        at=at(2),
        agent="ana",
        command="transfer",
        args=["ben", "the", "other", "half"],
        conversation="mail/<t@x>",
    )
    [(_, assigned)] = [
        (v, d) for v, d in deliveries(run) if d["event"] == "assigned" and d["agent"]["id"] == "ben"
    ]
    lived = [
        (m["kind"], m["direction"], (m["from"] or {}).get("role"), m["text"])
        for m in assigned["context"]["transcript"]
    ]
    ack = next(e.text for e in run.out("outbound.mail") if e.meta["purpose"] == "ack")
    told = next(e.text for e in run.out("outbound.mail") if e.meta["purpose"] == "transfer")
    assert lived == [
        ("message", "in", "customer", "refund please"),
        ("reply", "out", "system", ack),
        ("reply", "out", "agent", "Refunded half of it."),
        ("command", "in", "agent", "transferred to ben by ana: the other half"),
        ("reply", "out", "system", told),
    ]


async def test_a_delivery_names_the_agents_time_zone_theirs_else_their_schedules(
    run: Run,
) -> None:
    engine = run.sim.engine
    config = engine.config
    hours = {"office": BusinessHoursConfig.model_validate({"timezone": "Asia/Tokyo"})}
    agents = [
        a.model_copy(update={"timezone": "America/New_York"} if i == 0 else {"schedule": "office"})
        for i, a in enumerate(config.agents)
    ]
    changed = config.model_copy(update={"agents": agents, "business_hours": hours})
    await engine.configure(changed, run.sim.clock)
    zones = {a.id: ("America/New_York" if i == 0 else "Asia/Tokyo") for i, a in enumerate(agents)}
    await run.step(**mail("eva@shop.test", "<tz@x>", "Where is my order?"))
    [(_, sent)] = deliveries(run)
    assert sent["agent"]["timezone"] == zones[sent["agent"]["id"]]


async def test_an_agents_files_go_to_the_customer_with_the_reply(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<f@x>", "Can I have the invoice?"))
    [assign] = run.actions("assign")
    invoice = Attachment(
        name="invoice.pdf",
        content_type="application/pdf",
        size=1234,
        sha256="a" * 64,
        ref="blob://sha256/" + "a" * 64,
    )
    reply = await run.sim._agent_envelope(
        1, {"agent": assign.agent, "reply": "Here it is.", "conversation": "mail/<f@x>"}, "r1"
    )
    event = reply.model_copy(update={"attachments": [invoice]})
    run.decisions += await run.sim.engine.handle(event, run.sim.clock)
    run.decisions += await run.sim.drain_outbox()
    [sent] = [e for e in run.out("outbound.mail") if e.meta["purpose"] == "reply"]
    assert (sent.text, sent.attachments) == ("Here it is.", [invoice])


RAW_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@pytest.mark.parametrize(
    ("zone", "languages", "sent_at", "lines"),
    [
        # 23:30 on Monday in Madrid; due an hour later, past midnight there.
        (
            "Europe/Madrid",
            ["es", "en"],
            "2026-03-02T22:30:00+00:00",
            [
                "Asignada: conversación #",
                "Responder antes de: martes, 0:30 (dentro de 1 hora)",
                "Por qué tú: Tienes la habilidad billing y además la menor carga",
                "[23:30] Eva: Where is my invoice?",
            ],
        ),
        # 23:30 on Monday in New York.
        (
            "America/New_York",
            ["en"],
            "2026-03-03T04:30:00+00:00",
            [
                "Assigned: conversation #",
                "Answer by Tuesday, 12:30\u202fAM (in 1 hour)",
                "Why you: You have the billing skill and the lightest load",
                "[11:30\u202fPM] Eva: Where is my invoice?",
            ],
        ),
    ],
)
async def test_the_summary_is_in_the_agents_language_with_times_in_their_zone(
    run: Run, zone: str, languages: list[str], sent_at: str, lines: list[str]
) -> None:
    engine = run.sim.engine
    config = engine.config
    agents = [
        a.model_copy(update={"timezone": zone, "languages": languages}) if a.id == "ana" else a
        for a in config.agents
    ]
    await engine.configure(config.model_copy(update={"agents": agents}), run.sim.clock)
    await run.step(at=sent_at, **mail("eva@shop.test", "<i18n@x>", "Where is my invoice?"))
    [(_, sent)] = deliveries(run)
    [text] = summaries(run)
    assert sent["agent"] == {"id": "ana", "name": "Ana", "timezone": zone, "language": languages[0]}
    for line in lines:
        assert line in text, (line, text)
    assert not RAW_TIMESTAMP.search(text), text  # the ISO times stay in the context
    assert sent["sla_due"] and sent["context"]["conversation"]["sla_due_at"]


async def test_a_conversation_opened_in_its_unit_has_its_promises_not_asked_for(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Promises are made with the token a delivery carries, so a conversation that the
    record's own unit opened has none: its first delivery does not read them. A later
    delivery of the conversation does."""
    from router.store import routing as stored

    asked: list[str] = []
    real = stored._promises

    def counted(conn: Any) -> Any:
        asked.append("promises")
        return real(conn)

    monkeypatch.setattr(stored, "_promises", counted)
    await run.step(**mail("eva@shop.test", "<a@x>", "My invoice is wrong"))
    assert len(run.out(".agent.mail")) == 1
    assert asked == []
    await run.step(**mail("eva@shop.test", "<a@x>", "Any news?", message_id="<b@x>"))
    assert len(run.out(".agent.mail")) == 2
    assert asked == ["promises"]


async def _new_customers(where: Path, monkeypatch: pytest.MonkeyPatch, *, knowing: bool) -> Any:
    """The deliveries of new customers' first messages, and the reads they asked for."""
    from router.routing import context
    from router.store import routing as stored

    asked: list[str] = []
    for name in (
        "_customer",
        "_customer_identities",
        "_recent_conversations",
        "_pending_suggestions",
    ):
        real = getattr(stored, name)

        def counted(conn: Any, real: Any = real, name: str = name) -> Any:
            asked.append(name)
            return real(conn)

        monkeypatch.setattr(stored, name, counted)
    if not knowing:  # what the store holds of them is read, as of a customer seen before
        monkeypatch.setattr(context.Created, "known", lambda self, conversation_id: None)
    store = await open_store(f"sqlite:///{where / 'store.sqlite3'}")
    try:
        sim = Simulation(load_config(CONFIG, env={}), store)
        await sim.start(datetime.fromisoformat(T0))
        sim.engine.ctx.signing_key = b"the same key for both runs"
        run = Run(sim, [])
        steps = [
            mail("eva@shop.test", "<a@x>", "My invoice is wrong"),  # one identity
            mail("max@shop.test", "<b@x>", "Refund please"),
            # A new visitor stating an email nobody has: two identities, read back.
            {
                "channel": "chat",
                "from": "v-1",
                "thread": "s1",
                "text": "hello",
                "identities": [{"kind": "email", "value": "zoe@shop.test"}],
            },
            # One stating the emails of two customers: a new one (the emails stay theirs),
            # with link suggestions.
            {
                "channel": "chat",
                "from": "v-2",
                "thread": "s2",
                "text": "hi",
                "identities": [
                    {"kind": "email", "value": "eva@shop.test"},
                    {"kind": "email", "value": "max@shop.test"},
                ],
            },
        ]
        seen = []
        with stored.seeded_ids("the same ids for both runs"):
            for i, event in enumerate(steps):
                before = len(asked)
                await run.step(at=at(i), **event)
                seen.append(asked[before:])
        return [encode(e) for t, e in sim.published if ".agent." in t], seen
    finally:
        await store.close()
        monkeypatch.undo()


async def test_a_new_customer_is_not_read_back_and_their_delivery_is_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer the record itself created has in the store only what it wrote: their
    first delivery does not read their row, identities, other conversations or link
    suggestions again, and is byte for byte the delivery that reading them gives. Two
    identities are read (their order is the database's); suggestions naming them too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    known, asked = await _new_customers(tmp_path / "a", monkeypatch, knowing=True)
    read, asked_reading = await _new_customers(tmp_path / "b", monkeypatch, knowing=False)
    assert len(known) == 4 and known == read
    everything = [
        "_customer",
        "_customer_identities",
        "_recent_conversations",
        "_pending_suggestions",
    ]
    assert asked_reading == [everything] * 4
    assert asked[:2] == [[], []]  # one identity each: nothing read
    assert asked[2] == ["_customer_identities"]
    assert asked[3] == ["_pending_suggestions"]  # the emails stay their owners'
    suggestions = orjson.loads(known[3])["delivery"]["context"]["customer"]
    assert len(suggestions["link_suggestions"]) == 2
