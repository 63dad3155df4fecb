"""Agents in their private chat with the bot: the card, replies to it, buttons, strangers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog.testing

from connectors.telegram.connector import TelegramConnector
from router.blobs import BlobStore
from router.connector import DONE, Incoming, Rejected, Services
from router.envelope import Command
from router.store import open_store
from tests.connectors.telegram.helpers import (
    AGENT_USER,
    CONVERSATION,
    TOKEN,
    Wired,
    delivery,
    telegram_config,
    wired,
)
from tests.harness.common import eventually
from tests.harness.telegram import FakeBotApi, fake_bot_api, message, press

WAIT = 10.0


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as fake:
        yield fake


async def card_sent(w: Wired, api: FakeBotApi) -> int:
    result = await w.connector.send(delivery())
    assert result.status == "sent", result
    [card] = api.to(AGENT_USER)
    return card.message_id


async def items_until(w: Wired, api: FakeBotApi, count: int) -> list[Incoming | Rejected]:
    """The next `count` items, each acked done; waits until the offset passed every update."""
    items = w.connector.receive()
    got = []
    try:
        for _ in range(count):
            item = await asyncio.wait_for(anext(items), WAIT)
            got.append(item)
            await item.ack(DONE)
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    return got


async def test_the_card_has_the_context_and_the_buttons(api: FakeBotApi, tmp_path: Path) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        key = f"card:{AGENT_USER}:{card_id}"
        assert await w.checkpoints.get_checkpoint("tg", key) == TOKEN
    [card] = api.to(AGENT_USER)
    for shown in (
        "#K7M2",
        "Eva",
        "telegram 42",
        "email e@x.es",
        "Answer by Fri, Jan 2",  # the year too once it is not this one
        "10:30\u202fAM UTC (",
        "Why you: You have served this customer before",
        "#A1B2 support-email",
        "charged twice",
    ):
        assert shown in card.text, shown
    assert card.reply_markup is not None
    buttons = [b["callback_data"] for row in card.reply_markup["inline_keyboard"] for b in row]
    assert buttons == ["accept", "resolve", "transfer", "away", "available"]


@pytest.mark.parametrize(
    ("timezone", "language", "due"),
    [
        # Babel's CLDR data writes them: the weekday and date (the year too once it is
        # not this one), the locale's clock, how long ago.
        ("Europe/Madrid", "es", ("Responder antes de: vie, 2 ene", "11:30 (hace ")),
        ("America/New_York", "en", ("Answer by Fri, Jan 2", "5:30\u202fAM (", " ago)")),
        ("America/New_York", None, ("Answer by Fri, Jan 2", "5:30\u202fAM (")),
        (None, "es", ("Responder antes de: vie, 2 ene", "10:30 UTC (hace ")),
    ],
)
async def test_the_answer_is_due_in_the_agents_time_zone_and_language(
    api: FakeBotApi,
    tmp_path: Path,
    timezone: str | None,
    language: str | None,
    due: tuple[str, ...],
) -> None:
    agent = {"id": "chloe", "timezone": timezone, "language": language}
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        sent = await w.connector.send(delivery(agent=agent))
        assert sent.status == "sent", sent
    [card] = api.to(AGENT_USER)
    [line] = [line for line in card.text.splitlines() if line.startswith(due[0])]
    for part in due:
        assert part in line, (part, line)
    assert "2026-01-02T" not in card.text


async def test_a_delivery_for_an_agent_elsewhere_fails(api: FakeBotApi, tmp_path: Path) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        result = await w.connector.send(delivery(agent="bob"))
        assert result.status == "failed" and "bob" in result.detail
    assert api.sent == []


async def test_a_reply_to_the_card_answers_the_customer(api: FakeBotApi, tmp_path: Path) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        card = {"message_id": card_id, "date": 0, "chat": {"id": AGENT_USER, "type": "private"}}
        api.add_update(message(api, AGENT_USER, "Refunded, sorry!", reply_to_message=card))
        [item] = await items_until(w, api, 1)
    assert isinstance(item, Incoming)
    env = item.envelope
    assert (env.kind, env.direction, env.text) == ("reply", "in", "Refunded, sorry!")
    assert env.sender.role == "agent" and env.sender.address == str(AGENT_USER)
    assert env.meta["token"] == TOKEN and env.thread_key == CONVERSATION


async def test_promise_and_kept_in_reply_to_the_card_are_commands(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        card = {"message_id": card_id, "date": 0, "chat": {"id": AGENT_USER, "type": "private"}}
        text = "/promise 17:00 call back with the refund status"
        api.add_update(message(api, AGENT_USER, text, reply_to_message=card))
        api.add_update(message(api, AGENT_USER, "/kept", reply_to_message=card))
        promise, kept = await items_until(w, api, 2)
    assert isinstance(promise, Incoming) and isinstance(kept, Incoming)
    assert promise.envelope.command == Command(
        name="promise", args=["17:00", "call back with the refund status"]
    )
    assert promise.envelope.text == text and promise.envelope.meta["token"] == TOKEN
    assert kept.envelope.command == Command(name="kept")
    assert api.to(AGENT_USER)[1:] == []  # no "not a command I know"


async def test_an_agents_file_in_reply_to_the_card_goes_with_the_reply(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.add_file("doc1", b"%PDF-1.7 invoice", "documents/doc1.pdf")
    doc = {"file_id": "doc1", "file_unique_id": "u1", "file_name": "invoice.pdf"}
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        card = {"message_id": card_id, "date": 0, "chat": {"id": AGENT_USER, "type": "private"}}
        api.add_update(
            message(
                api, AGENT_USER, None, document=doc, caption="Your invoice", reply_to_message=card
            )
        )
        [item] = await items_until(w, api, 1)
        assert isinstance(item, Incoming)
        env = item.envelope
        assert (env.kind, env.text, env.meta["token"]) == ("reply", "Your invoice", TOKEN)
        [att] = env.attachments
        assert att.name == "invoice.pdf" and w.blobs.get(att.ref) == b"%PDF-1.7 invoice"


async def test_a_message_replying_to_nothing_asks_which_conversation(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        lost = api.add_update(message(api, AGENT_USER, "Refunded"))
        api.add_update(message(api, AGENT_USER, "/away"))
        [item] = await items_until(w, api, 1)
        assert isinstance(item, Incoming)
        assert item.envelope.command is not None and item.envelope.command.name == "away"
        assert int(await w.checkpoints.get_checkpoint("tg", "offset") or 0) > lost
    [asked] = api.to(AGENT_USER)
    assert "Which conversation" in asked.text


async def test_buttons_are_commands_for_the_cards_conversation(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        api.add_update(press(api, AGENT_USER, card_id, "accept"))
        api.add_update(press(api, AGENT_USER, card_id, "transfer"))  # explains how
        api.add_update(press(api, AGENT_USER, card_id, "resolve"))
        accept, resolve = await items_until(w, api, 2)
    commands = []
    for item in (accept, resolve):
        assert isinstance(item, Incoming)
        env = item.envelope
        assert env.command is not None and env.meta["token"] == TOKEN
        commands.append(env.command.name)
    assert commands == ["accept", "resolve"]
    answers = [str(p.get("text")) for m, p in api.calls if m == "answerCallbackQuery"]
    assert answers[0] == "Accept: sent" and "/transfer" in answers[1]


async def answered_while_sent(
    w: Wired, api: FakeBotApi, answer: Callable[[int], dict[str, Any]]
) -> Incoming | Rejected:
    """Start the connector and send a card; once it is in the agent's chat, the agent's
    `answer(card message id)` comes in while the send may still be storing its token. The
    item it gives; the send must have succeeded."""
    await w.connector.start()
    sending = asyncio.create_task(w.connector.send(delivery()))
    try:
        await eventually(lambda: len(api.to(AGENT_USER)) == 1, WAIT)
        [card] = api.to(AGENT_USER)
        api.add_update(answer(card.message_id))
        [item] = await items_until(w, api, 1)
        assert (await sending).status == "sent"
    finally:
        sending.cancel()
    return item


async def test_a_press_on_a_card_whose_token_is_being_stored_waits_for_it(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with wired(api, tmp_path) as w:
        looked_up = asyncio.Event()
        get, put = w.checkpoints.get_checkpoint, w.checkpoints.set_checkpoint

        async def looking(name: str, key: str) -> str | None:
            if key.startswith("card:"):
                looked_up.set()
            return await get(name, key)

        async def slow(name: str, key: str, value: str) -> None:
            if key.startswith("card:"):  # stored only once the press looked for it
                await looked_up.wait()
            await put(name, key, value)

        monkeypatch.setattr(w.checkpoints, "get_checkpoint", looking)
        monkeypatch.setattr(w.checkpoints, "set_checkpoint", slow)
        item = await answered_while_sent(
            w, api, lambda card_id: press(api, AGENT_USER, card_id, "accept")
        )
    assert isinstance(item, Incoming) and item.envelope.meta["token"] == TOKEN


async def test_a_reply_whose_card_token_is_stored_during_the_lookup_finds_it(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lookup reads before the write commits, and answers after the write has ended
    # (and dropped its event): the reply must still find its card, not ask which one.
    async with wired(api, tmp_path) as w:
        looked_up, written = asyncio.Event(), asyncio.Event()
        get, put = w.checkpoints.get_checkpoint, w.checkpoints.set_checkpoint

        async def stale(name: str, key: str) -> str | None:
            value = await get(name, key)
            if key.startswith("card:") and not looked_up.is_set():
                looked_up.set()
                await written.wait()  # the answer read before the write arrives after it
            return value

        async def after_the_read(name: str, key: str, value: str) -> None:
            if key.startswith("card:"):
                await looked_up.wait()
            await put(name, key, value)
            if key.startswith("card:"):
                written.set()

        monkeypatch.setattr(w.checkpoints, "get_checkpoint", stale)
        monkeypatch.setattr(w.checkpoints, "set_checkpoint", after_the_read)

        def reply(card_id: int) -> dict[str, Any]:
            answered = {"message_id": card_id, "date": 0, "chat": {"id": AGENT_USER}}
            return message(api, AGENT_USER, "Here to help", reply_to_message=answered)

        item = await answered_while_sent(w, api, reply)
    assert isinstance(item, Incoming) and item.envelope.meta["token"] == TOKEN
    assert len(api.to(AGENT_USER)) == 1  # no "which conversation?" in the agent's chat


def keyboards(api: FakeBotApi) -> list[list[str]]:
    """The callback data of each keyboard the card was changed to, in order."""
    out = []
    for method, params in api.calls:
        if method == "editMessageReplyMarkup":
            markup = orjson.loads(params["reply_markup"])
            out.append([b["callback_data"] for row in markup["inline_keyboard"] for b in row])
    return out


async def test_transfer_picks_a_queue_from_the_cards_keyboard(
    api: FakeBotApi, tmp_path: Path
) -> None:
    queues = ["billing", "returns"]
    async with wired(api, tmp_path, queues=queues) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        api.add_update(press(api, AGENT_USER, card_id, "transfer"))  # the picker
        api.add_update(press(api, AGENT_USER, card_id, "back"))  # the card's buttons again
        api.add_update(press(api, AGENT_USER, card_id, "transfer"))
        taking = asyncio.create_task(items_until(w, api, 1))
        try:
            await eventually(lambda: len(keyboards(api)) == 3, WAIT)
            queues[:] = ["returns"]  # a reload removed billing
            api.add_update(press(api, AGENT_USER, card_id, ">billing"))  # refused: gone
            api.add_update(press(api, AGENT_USER, card_id, ">returns"))
            [item] = await taking
        finally:
            taking.cancel()
    assert isinstance(item, Incoming)
    env = item.envelope
    assert env.command is not None and env.meta["token"] == TOKEN
    assert (env.command.name, env.command.args) == ("transfer", ["returns"])
    card = ["accept", "resolve", "transfer", "away", "available"]
    picker = [">billing", ">returns", "back"]
    assert keyboards(api) == [picker, card, picker, card, card]
    answers = [str(p.get("text")) for m, p in api.calls if m == "answerCallbackQuery"]
    assert answers[0].startswith("Transfer to which queue?")
    assert answers[3:] == ["There is no queue 'billing' any more.", "Transfer to returns: sent"]


async def test_a_stranger_pressing_a_button_gets_a_polite_refusal(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        card_id = await card_sent(w, api)
        api.add_update(press(api, 4242, card_id, "accept"))
        api.add_update(message(api, 42, "customer text"))
        with structlog.testing.capture_logs() as logs:
            [item] = await items_until(w, api, 1)
        assert isinstance(item, Incoming) and item.envelope.kind == "message"
    answers = [p.get("text") for m, p in api.calls if m == "answerCallbackQuery"]
    assert answers == [
        "Sorry, this chat is for our support team only. Write to us here as a customer."
    ]
    assert any(e.get("user_id") == 4242 for e in logs)


async def test_old_cards_are_pruned_the_offset_kept(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        async with fake_bot_api() as fake:
            connector = TelegramConnector(
                "tg",
                telegram_config(fake, card_retention="30d"),
                Services(blobs=BlobStore(tmp_path / "blobs"), checkpoints=store),
            )
            for key in ("card:777:5", "offset"):
                await store.set_checkpoint("tg", key, "x")
            await store.set_checkpoint("other-tg", "card:777:5", "x")
            now = datetime.now(UTC)
            assert await connector.prune(now + timedelta(days=29)) == 0
            assert await connector.prune(now + timedelta(days=31)) == 1
            assert await store.get_checkpoint("tg", "card:777:5") is None
            assert await store.get_checkpoint("tg", "offset") == "x"
            assert await store.get_checkpoint("other-tg", "card:777:5") == "x"
    finally:
        await store.close()


async def test_cards_are_pruned_while_the_connector_runs(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pruned: list[tuple[str, str]] = []

    async def prune(name: str, prefix: str, before: datetime) -> int:
        pruned.append((name, prefix))
        return 0

    async with wired(api, tmp_path) as w:
        monkeypatch.setattr(w.checkpoints, "prune_checkpoints", prune)
        await w.connector.start()
        await eventually(lambda: pruned == [("tg", "card:")], WAIT)
