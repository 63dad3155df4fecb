"""Customers' updates in, by long polling and by webhook, against the fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog.testing

from connectors.telegram.connector import SECRET_HEADER
from connectors.telegram.identity import deep_link_key, start_payload
from router.connector import DONE, Incoming, Outcome, Rejected
from router.envelope import StatedIdentity, now_utc
from tests.connectors.telegram.helpers import SECRET, Wired, reply, wired
from tests.harness.common import eventually
from tests.harness.telegram import FakeBotApi, fake_bot_api, message

WAIT = 10.0


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as fake:
        yield fake


async def take(items: AsyncIterator[Incoming | Rejected]) -> Incoming:
    item = await asyncio.wait_for(anext(items), WAIT)
    assert isinstance(item, Incoming), item
    return item


async def test_polling_confirms_the_offset_only_after_the_ack(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        first = api.add_update(message(api, 42, "my order is late"))
        items = w.connector.receive()
        try:
            got = await take(items)
            env = got.envelope
            assert (env.kind, env.direction, env.thread_key) == ("message", "in", "42")
            assert env.sender.address == "42" and env.sender.role == "customer"
            assert env.text == "my order is late"
            assert env.reply_context["chat_id"] == 42
            assert await w.checkpoints.get_checkpoint("tg", "offset") is None
            await got.ack(DONE)
            assert await w.checkpoints.get_checkpoint("tg", "offset") == str(first + 1)
            second = api.add_update(message(api, 43, "hi"))
            assert (await take(items)).envelope.sender.address == "43"
            # the next getUpdates told Telegram the first is safe, not the second
            assert api.confirmed == first + 1
            assert api.pending() == [second]
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_polling_waits_for_the_acks_before_asking_for_more(
    api: FakeBotApi, tmp_path: Path
) -> None:
    """The channel runner keeps several updates in flight and asks for the next before they
    are acked: the next getUpdates waits for their acks (sent before, it would get them
    back at once, again and again)."""

    def polls() -> int:
        return sum(1 for method, _ in api.calls if method == "getUpdates")

    async with wired(api, tmp_path) as w:
        await w.connector.start()
        first = api.add_update(message(api, 42, "one"))
        second = api.add_update(message(api, 43, "two"))
        items = w.connector.receive()
        waiting: asyncio.Future[Any] | None = None
        try:
            taken = [await take(items), await take(items)]
            asked = polls()
            waiting = asyncio.ensure_future(anext(items))  # the runner asks for more at once
            # A poll that did not wait would show here (this bound only gives it its chance).
            with contextlib.suppress(AssertionError):
                await eventually(lambda: polls() > asked, 2)
            assert polls() == asked
            for item in taken:
                await item.ack(DONE)
            await eventually(lambda: api.confirmed == second + 1)  # the next poll, after
            assert api.pending() == [] and first < second
        finally:
            if waiting is not None:
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
            await items.aclose()  # type: ignore[attr-defined]


async def test_polling_restarts_from_the_kept_offset(api: FakeBotApi, tmp_path: Path) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        api.add_update(message(api, 42, "one"))
        items = w.connector.receive()
        await (await take(items)).ack(DONE)
        await items.aclose()  # type: ignore[attr-defined]
        await w.connector.stop()
        # Telegram was never told (no getUpdates after the ack): the checkpoint is enough
        api.confirmed = 0
        api.add_update(message(api, 42, "two"))
        await w.connector.start()
        items = w.connector.receive()
        try:
            assert (await take(items)).envelope.text == "two"
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_files_go_to_the_blob_store_and_a_file_over_20_mb_is_a_note(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.add_file("ph1", b"\xff\xd8jpeg bytes", "photos/ph1.jpg")
    photo = [
        {"file_id": "ph0", "file_unique_id": "u0", "width": 90, "height": 90},
        {"file_id": "ph1", "file_unique_id": "u1", "width": 800, "height": 600},
    ]
    big = {
        "file_id": "big",
        "file_unique_id": "ub",
        "file_name": "scan.pdf",
        "mime_type": "application/pdf",
        "file_size": 25 * 1024 * 1024,
    }
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        api.add_update(message(api, 42, None, photo=photo, caption="the box"))
        api.add_update(message(api, 42, None, document=big))
        items = w.connector.receive()
        try:
            env = (await take(items)).envelope
            assert env.text == "the box"
            [att] = env.attachments
            assert w.blobs.get(att.ref) == b"\xff\xd8jpeg bytes"
            assert (att.name, att.content_type) == ("photo.jpg", "image/jpeg")
            env = (await take(items)).envelope
            assert env.attachments == []
            assert "scan.pdf" in env.text and "20 MB" in env.text
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_an_edit_is_its_own_envelope_naming_the_original(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        body = message(api, 42, "helo")["message"]
        api.add_update({"message": body})
        api.add_update({"edited_message": {**body, "text": "hello", "edit_date": body["date"] + 5}})
        items = w.connector.receive()
        try:
            original = (await take(items)).envelope
            edit = (await take(items)).envelope
            assert edit.id != original.id
            assert edit.meta["edit_of"] == original.id and edit.text == "hello"
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_only_our_deep_links_and_the_senders_own_contact_state_identities(
    api: FakeBotApi, tmp_path: Path
) -> None:
    email = StatedIdentity(kind="email", value="ana@example.com")
    good = start_payload(deep_link_key(api.token), email, now_utc().timestamp())
    forged = start_payload(b"not our key", email, now_utc().timestamp())
    altered = good.replace(good[1:3], "aa", 1)
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        for text in (f"/start {good}", f"/start {forged}", f"/start {altered}"):
            api.add_update(message(api, 42, text))
        own = {"phone_number": "34600112233", "first_name": "Ana", "user_id": 42}
        other = {"phone_number": "34699999999", "first_name": "Bob", "user_id": 99}
        api.add_update(message(api, 42, None, contact=own))
        api.add_update(message(api, 42, None, contact=other))
        items = w.connector.receive()
        try:
            stated = [(await take(items)).envelope.identities for _ in range(5)]
        finally:
            await items.aclose()  # type: ignore[attr-defined]
    phone = StatedIdentity(kind="phone", value="+34600112233")
    assert stated == [[email], [], [], [phone], []]


async def test_a_bad_update_is_rejected_and_the_next_one_taken(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        bad = api.add_update({"message": {"message_id": 1, "text": "no chat, no sender"}})
        api.add_update(message(api, 42, "fine"))
        items = w.connector.receive()
        try:
            item = await asyncio.wait_for(anext(items), WAIT)
            assert isinstance(item, Rejected) and "chat" in item.reason
            await item.ack(Outcome(item.reason, retriable=False))
            assert await w.checkpoints.get_checkpoint("tg", "offset") == str(bad + 1)
            assert (await take(items)).envelope.text == "fine"
        finally:
            await items.aclose()  # type: ignore[attr-defined]


# --- webhook --------------------------------------------------------------------------------


async def post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=update, headers=headers) as resp:
            return resp.status


async def serve(w: Wired, count: int) -> list[str]:
    """Take `count` items from the webhook intake, acking each done; their envelope ids."""
    items = w.connector.receive()
    ids = []
    try:
        for _ in range(count):
            item = await take(items)
            ids.append(item.envelope.id)
            await item.ack(DONE)
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    return ids


async def test_webhook_registers_with_the_secret_and_refuses_a_wrong_one(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path, mode="webhook") as w:
        await w.connector.start()
        assert api.webhook is not None
        assert api.webhook["secret_token"] == SECRET
        assert api.token not in api.webhook["url"] and api.token not in w.url
        update = {"update_id": 5, **message(api, 42, "hi")}
        assert await post(w.url, update, None) == 401
        assert await post(w.url, update, "wrong") == 401
        assert w.connector.intake is not None and w.connector.intake.queued() == 0


async def test_webhook_answers_once_acked_and_a_replay_creates_nothing(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path, mode="webhook") as w:
        await w.connector.start()
        update = {"update_id": 5, **message(api, 42, "hi")}
        served = asyncio.create_task(serve(w, 2))
        assert await post(w.url, update, SECRET) == 200
        assert await post(w.url, update, SECRET) == 200  # Telegram sends it again
        later = {"update_id": 6, **message(api, 42, "later")}
        assert await post(w.url, later, SECRET) == 200
        first, second = await asyncio.wait_for(served, WAIT)
        assert first != second  # the replay was not offered: the second is the later one


async def test_the_bot_token_is_in_no_log_line(
    api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as captured:
        for mode in ("polling", "webhook"):
            async with wired(api, tmp_path / mode, mode=mode) as w:
                await w.connector.start()
                if mode == "polling":
                    api.add_update(message(api, 42, "hi"))
                    items = w.connector.receive()
                    await (await take(items)).ack(DONE)
                    await items.aclose()  # type: ignore[attr-defined]
                else:
                    assert await post(w.url, {"update_id": 9}, "wrong") == 401
                api.fail("sendMessage", "403")
                env = reply(42, "hello")
                assert (await w.connector.send(env)).status == "failed"
    text = caplog.text + repr(captured)
    assert "getUpdates" in text or "sendMessage" in text or captured  # something was logged
    assert api.token not in text
    assert api.token.split(":")[1] not in text
