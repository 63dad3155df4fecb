"""Out of hours and the forms: the welcome says when we open, a message left then is an
ordinary one that tells the agent so, and the form's answers (given only with consent)
name the visitor, state their email and phone, and give the topic as the subject."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.connectors.webchat.helpers import chat

OPENS = timedelta(hours=15)


def closed(_channel: str, now: datetime) -> datetime:
    return now + OPENS


async def test_out_of_hours_the_welcome_says_when_we_open(tmp_path: Path) -> None:
    async with chat(tmp_path, opens_at=closed) as c:
        before = datetime.now().astimezone()
        client = await c.hello()
        welcome = await client.next("welcome")
        opens = datetime.fromisoformat(welcome["opens_at"])
        assert before + OPENS <= opens <= datetime.now().astimezone() + OPENS
    async with chat(tmp_path) as c:
        client = await c.hello()
        assert "opens_at" not in await client.next("welcome")


async def test_a_message_left_out_of_hours_is_an_ordinary_one_marked_for_the_agent(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, opens_at=closed) as c:
        client = await c.hello()
        await client.next("welcome")
        await client.send(
            {
                "t": "form",
                "consent": True,
                "reply_by_email": True,
                "fields": {"name": "Ana", "email": "ana@example.com"},
            }
        )
        assert await client.next("form") == {"t": "form", "saved": True}
        assert (await client.say("c1", "Is the blue teapot back?"))["state"] == "sent"
        [env] = c.runner.taken
        assert (env.kind, env.text) == ("message", "Is the blue teapot back?")
        assert env.meta["left_while_closed"] is True
        # Agreed to be answered by email: the typed part the router reads.
        assert env.answer_at is not None
        assert (env.answer_at.kind, env.answer_at.value) == ("email", "ana@example.com")
        assert "reply_by_email" not in env.meta
        assert env.sender.name == "Ana"
        assert [(i.kind, i.value) for i in env.identities] == [("email", "ana@example.com")]


async def test_in_hours_a_message_is_not_marked(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello()
        await client.next("welcome")
        assert (await client.say("c1", "hola"))["state"] == "sent"
        [env] = c.runner.taken
        assert "left_while_closed" not in env.meta and env.answer_at is None


async def test_the_pre_chat_form_names_the_visitor_and_its_topic_is_the_subject(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, form=["name", "phone", "topic"], topics=["Orders", "Returns"]) as c:
        client = await c.hello()
        welcome = await client.next("welcome")
        assert welcome["look"]["form"] == ["name", "phone", "topic"]
        assert welcome["look"]["topics"] == ["Orders", "Returns"]
        fields = {"name": "Bo", "phone": "+34600000000", "topic": "Returns"}
        await client.send({"t": "form", "consent": True, "fields": fields})
        await client.next("form")
        assert (await client.say("c1", "It arrived broken")).get("state") == "sent"
        # A second tab of the same session: the answers were kept with the session.
        tab = await c.hello(session=welcome["session"], last=1)
        await tab.next("welcome")
        assert (await tab.say("c2", "Photo attached soon"))["state"] == "sent"
        for env in c.runner.taken:
            assert (env.sender.name, env.subject) == ("Bo", "Returns")
            assert [(i.kind, i.value) for i in env.identities] == [("phone", "+34600000000")]
            assert env.answer_at is None


async def test_a_form_without_consent_is_refused_and_keeps_nothing(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello()
        await client.next("welcome")
        await client.send({"t": "form", "fields": {"email": "ana@example.com"}})
        assert await client.closed() == (
            4400,
            "consent: the visitor must agree to the consent line first",
        )
        other = await c.hello()
        await other.next("welcome")
        await other.send({"t": "form", "consent": True, "reply_by_email": True, "fields": {}})
        code, reason = await other.closed()
        assert (code, reason) == (4400, "reply_by_email: needs an email")


async def test_the_form_by_the_http_fallback(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        headers = {"Origin": "https://shop.example.com"}
        async with c.http.post(f"{c.url}/http", json={"t": "hello"}, headers=headers) as r:
            [welcome] = await r.json()
        frame = {
            "t": "form",
            "session": welcome["session"],
            "consent": True,
            "fields": {"name": "Cy"},
        }
        async with c.http.post(f"{c.url}/http", json=frame, headers=headers) as r:
            assert await r.json() == [{"t": "form", "saved": True}]
        who = await c.connector.sessions.who(welcome["visitor"])
        assert who is not None and who["name"] == "Cy"


async def test_a_form_flood_is_rate_limited_like_messages(tmp_path: Path) -> None:
    async with chat(tmp_path, messages_per_minute=2) as c:
        client = await c.hello()
        await client.next("welcome")
        for n in range(3):
            await client.send({"t": "form", "consent": True, "fields": {"name": f"N{n}"}})
        code, reason = await client.closed()
        assert (code, reason) == (4429, "rate limited: more than 2 messages a minute in this chat")
