"""Answers by email and the transcript by email, the widget's side: the consent travels as
the envelope's `answer_at`, and "email me the transcript" is asked of the router only when
something can send it, else refused with the reason (docs/webchat.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.connectors.webchat.helpers import ORIGIN, Client, chat

AGREED = {
    "t": "form",
    "consent": True,
    "reply_by_email": True,
    "fields": {"name": "Ana", "email": "ana@example.com"},
}


async def answer(client: Client, cid: str) -> dict[str, Any]:
    """The `state` or `error` frame about `cid`."""
    while True:
        frame = await client.next()
        if frame["t"] in ("state", "error") and frame.get("cid") == cid:
            return frame


async def test_the_welcome_says_whether_answers_by_email_are_offered(tmp_path: Path) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        client = await c.hello()
        assert (await client.next("welcome"))["look"]["by_email"] is True
    async with chat(tmp_path) as c:
        client = await c.hello()
        assert (await client.next("welcome"))["look"]["by_email"] is False


async def test_the_transcript_is_asked_of_the_router_with_the_agreed_email(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        client = await c.hello()
        welcome = await client.next("welcome")
        await client.send(AGREED)
        await client.next("form")
        assert (await client.say("c1", "Where is my order?"))["state"] == "sent"
        await client.send({"t": "transcript", "cid": "t1"})
        assert await answer(client, "t1") == {"t": "state", "cid": "t1", "state": "sent"}
        message, asked = c.runner.taken
        assert message.answer_at is not None and message.answer_at.value == "ana@example.com"
        assert (asked.kind, asked.request, asked.text) == ("message", "transcript", "")
        assert asked.answer_at is not None
        assert (asked.answer_at.kind, asked.answer_at.value) == ("email", "ana@example.com")
        assert asked.thread_key == welcome["visitor"]
        # Asking again with the same client id is the same request (the router drops it).
        await client.send({"t": "transcript", "cid": "t1"})
        await answer(client, "t1")
        assert c.runner.taken[-1].id == asked.id
        # Nothing shown in the log for the request itself: the router's answer comes there.
        assert [m["text"] for m in client.messages()] == ["Where is my order?"]


async def test_the_transcript_is_refused_without_an_agreed_email(tmp_path: Path) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        client = await c.hello()
        await client.next("welcome")
        # An email given without agreeing to be answered by it is not enough.
        fields = {"email": "ana@example.com"}
        await client.send({"t": "form", "consent": True, "fields": fields})
        await client.next("form")
        assert (await client.say("c1", "hola"))["state"] == "sent"
        await client.send({"t": "transcript", "cid": "t1"})
        assert await answer(client, "t1") == {
            "t": "error",
            "code": "email_required",
            "cid": "t1",
            "reason": "give your email and agree to be answered by email",
        }
        assert [e.request for e in c.runner.taken] == [None]


async def test_the_transcript_is_refused_when_no_email_channel_is_configured(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello()
        await client.next("welcome")
        await client.send(AGREED)
        await client.next("form")
        assert (await client.say("c1", "hola"))["state"] == "sent"
        await client.send({"t": "transcript", "cid": "t1"})
        frame = await answer(client, "t1")
        assert (frame["t"], frame["code"]) == ("error", "no_email_channel")
        assert frame["reason"] == "this chat cannot send transcripts by email"
        assert [e.request for e in c.runner.taken] == [None]


async def test_the_transcript_of_an_empty_chat_is_refused(tmp_path: Path) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        client = await c.hello()
        await client.next("welcome")
        await client.send(AGREED)
        await client.next("form")
        await client.send({"t": "transcript", "cid": "t1"})
        assert (await answer(client, "t1"))["code"] == "nothing_yet"
        assert c.runner.taken == []


async def test_the_transcript_by_the_http_fallback(tmp_path: Path) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        headers = {"Origin": ORIGIN}
        async with c.http.post(f"{c.url}/http", json={"t": "hello"}, headers=headers) as r:
            [welcome] = await r.json()
        session = welcome["session"]
        for frame in (
            {**AGREED, "session": session},
            {"t": "msg", "cid": "c1", "text": "hola", "session": session},
            {"t": "transcript", "cid": "t1", "session": session},
        ):
            async with c.http.post(f"{c.url}/http", json=frame, headers=headers) as r:
                assert r.status == 200, await r.text()
                answered = await r.json()
        assert answered == [{"t": "state", "cid": "t1", "state": "sent"}]
        assert [e.request for e in c.runner.taken] == [None, "transcript"]


async def test_a_transcript_frame_needs_a_client_id(tmp_path: Path) -> None:
    async with chat(tmp_path, answer_by_email="support-email") as c:
        client = await c.hello()
        await client.next("welcome")
        await client.send({"t": "transcript"})
        assert await client.closed() == (4400, "cid: expected 1-64 of A-Z a-z 0-9 _ -")
