"""Replies to customers: the same chat, paced, 429 honoured and re-sent in order, 403 final."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.telegram.client import Pacer
from router.blobs import BlobStore
from router.connector import DONE, Incoming
from router.envelope import Attachment
from tests.connectors.telegram.helpers import reply, wired
from tests.harness.telegram import FakeBotApi, Sent, fake_bot_api, message

PER_CHAT = 0.1
OVERALL = (5, 0.1)  # five sends per tenth of a second in all


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as fake:
        yield fake


async def test_a_reply_goes_to_the_chat_as_a_reply_only_when_it_helps(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        api.add_update(message(api, 42, "where is my order?"))
        items = w.connector.receive()
        got = await asyncio.wait_for(anext(items), 10)
        assert isinstance(got, Incoming)
        await got.ack(DONE)
        await items.aclose()  # type: ignore[attr-defined]
        asked = got.envelope.reply_context["message_id"]
        # the customer's message is the chat's latest: a plain message is clear
        result = await w.connector.send(reply(42, "We got it", message_id=asked))
        assert result.status == "sent"
        # now it is not: the answer quotes the question
        await w.connector.send(reply(42, "It ships today", message_id=asked, n=1))
        [first, second] = api.to(42)
        assert (first.text, first.reply_to) == ("We got it", None)
        assert (second.text, second.reply_to) == ("It ships today", asked)
        assert result.native_id == str(first.message_id)


async def test_a_long_reply_is_cut_into_telegram_messages(api: FakeBotApi, tmp_path: Path) -> None:
    text = "\n".join(f"line {i} " + "x" * 90 for i in range(100))  # about 10,000 characters
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        assert (await w.connector.send(reply(42, text))).status == "sent"
    parts = [s.text for s in api.to(42)]
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == text


def spacing(sent: list[Sent]) -> float:
    return min((b.at - a.at for a, b in itertools.pairwise(sent)), default=1e9)


async def test_many_replies_under_429s_all_arrive_in_order_and_paced(
    api: FakeBotApi, tmp_path: Path
) -> None:
    chats, each = 12, 5
    for chat in (1, 5):  # Telegram's flood control on a few chats
        api.fail("sendMessage", "429", chat_id=chat, times=1, retry_after=1)
    api.fail("sendMessage", "429", chat_id=9, times=2, retry_after=1)  # twice in a row
    pacer = Pacer(per_chat=PER_CHAT, overall=OVERALL)
    async with wired(api, tmp_path, pacer=pacer) as w:
        await w.connector.start()
        # as the outbound topic hands them over: one at a time, chats interleaved
        for n in range(each):
            for chat in range(1, chats + 1):
                result = await w.connector.send(reply(chat, f"{chat}/{n}", n=n))
                assert result.status == "sent", result
    assert len(api.refused) == 4  # every injected 429 was met, and then sent again
    by_chat: dict[int, list[Sent]] = defaultdict(list)
    for s in api.sent:
        by_chat[s.chat_id].append(s)
    assert sorted(by_chat) == list(range(1, chats + 1))
    for chat, sent in by_chat.items():
        assert [s.text for s in sent] == [f"{chat}/{n}" for n in range(each)]  # order, none lost
        assert spacing(sent) >= PER_CHAT
    # never more than OVERALL[0] sends arrive within OVERALL[1] seconds
    times = [s.at for s in api.sent]
    limit, window = OVERALL
    assert all(times[i + limit] - times[i] >= window for i in range(len(times) - limit))
    # after a 429 the chat waited retry_after before the same message came again
    for _, _, chat_text, at in api.refused:
        later = [s for s in by_chat[int(chat_text)] if s.at > at]
        assert later[0].at - at >= 1.0
    assert len(api.sent) == chats * each


async def test_a_blocked_user_fails_for_good_and_is_not_retried(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.fail("sendMessage", "403", chat_id=42, times=100)
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        result = await w.connector.send(reply(42, "hello"))
        assert result.status == "failed"
        assert "403" in result.detail and "blocked" in result.detail
        assert (await w.connector.send(reply(43, "others still get theirs"))).status == "sent"
    assert [m for m, _ in api.calls].count("sendMessage") == 2  # one try each


async def test_a_long_flood_hold_goes_back_to_the_runner(api: FakeBotApi, tmp_path: Path) -> None:
    api.fail("sendMessage", "429", chat_id=42, retry_after=2)
    async with wired(api, tmp_path) as w:
        w.connector._max_hold = 1.0  # the hold the runner takes over from
        await w.connector.start()
        result = await w.connector.send(reply(42, "hello"))
        assert result.status == "retry" and "wait 2" in result.detail
        assert api.sent == []


async def test_a_timeout_is_retried_later_not_lost(api: FakeBotApi, tmp_path: Path) -> None:
    api.fail("sendMessage", "timeout")  # the fake holds its answer for 5 s
    async with wired(api, tmp_path) as w:
        w.connector.read_timeout = 0.5
        await w.connector.start()
        result = await w.connector.send(reply(42, "hello"))
        assert result.status == "retry" and "not reached" in result.detail
        assert (await w.connector.send(reply(42, "hello"))).status == "sent"


async def test_a_replys_files_follow_its_text_as_photo_and_document(
    api: FakeBotApi, tmp_path: Path
) -> None:
    photo, pdf = b"\x89PNG\r\n\x1a\n fake png", b"%PDF-1.7 fake invoice"
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        files = [
            attachment(w.blobs, "label.png", "image/png", photo),
            attachment(w.blobs, "invoice.pdf", "application/pdf", pdf),
        ]
        result = await w.connector.send(
            reply(42, "Here are your label and invoice").model_copy(update={"attachments": files})
        )
        assert result.status == "sent", result
        only_files = reply(42, "", n=1).model_copy(update={"attachments": files[1:]})
        assert (await w.connector.send(only_files)).status == "sent"
    text, shown, sent, again = api.to(42)
    assert (text.text, text.file) == ("Here are your label and invoice", None)
    assert (shown.file, sent.file, again.file) == (
        ("label.png", photo),
        ("invoice.pdf", pdf),
        ("invoice.pdf", pdf),
    )
    assert [m for m, _ in api.calls if m.startswith("send")] == [
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendDocument",
    ]
    assert result.native_id == str(sent.message_id)


async def test_a_file_over_telegrams_limit_fails_before_anything_is_sent(
    api: FakeBotApi, tmp_path: Path
) -> None:
    async with wired(api, tmp_path) as w:
        await w.connector.start()
        big = Attachment(
            name="video.mp4",
            content_type="video/mp4",
            size=60 * 1024 * 1024,
            sha256="0" * 64,
            ref="blob://sha256/" + "0" * 64,
        )
        result = await w.connector.send(
            reply(42, "The video").model_copy(update={"attachments": [big]})
        )
    assert result.status == "failed" and "video.mp4" in result.detail
    assert api.sent == []


def attachment(blobs: BlobStore, name: str, content_type: str, data: bytes) -> Attachment:
    sha, ref = blobs.put(data)
    return Attachment(name=name, content_type=content_type, size=len(data), sha256=sha, ref=ref)
