"""The web chat server over real sockets: refusals that touch no other session, the ack
only once on the bus, resume and resend with nothing missing and nothing twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from connectors.webchat.tokens import issue_session, sign_identity
from router.connector import Outcome
from router.envelope import Sender, Standing
from tests.connectors.webchat.helpers import (
    KEY,
    OLD_KEY,
    ORIGIN,
    SHOP_KEY,
    Chat,
    Client,
    chat,
    reply,
    until,
)


async def started(c: Chat) -> tuple[Client, str, str]:
    """A visitor with a session: its client, visitor id and session token."""
    client = await c.hello()
    welcome = await client.next("welcome")
    return client, welcome["visitor"], welcome["session"]


async def still_works(c: Chat, client: Client, cid: str) -> None:
    state = await client.say(cid, "still here")
    assert state["state"] == "sent"


async def test_a_message_is_sent_once_on_the_bus_and_numbered(tmp_path: Path) -> None:
    async with chat(tmp_path, outcome=None) as c:
        client, visitor, _ = await started(c)
        await client.send({"t": "msg", "cid": "c1", "text": "hola"})
        await until(lambda: len(c.runner.held) == 1)
        [env] = c.runner.taken
        assert env.thread_key == visitor and env.sender.address == visitor
        assert env.text == "hola" and env.channel_type == "webchat"
        # Not on the bus yet: nothing numbered, nothing said but the welcome.
        assert await c.connector.sessions._store.get_checkpoint("web", f"n:{visitor}") is None
        assert client.frames == [client.frames[0]]
        await c.runner.release()
        msg = await client.next("msg")
        assert (msg["seq"], msg["from"], msg["cid"]) == (1, "visitor", "c1")
        assert await client.next("state") == {"t": "state", "cid": "c1", "state": "sent", "seq": 1}


async def test_a_reply_waits_for_the_visitor_message_on_its_way_to_the_bus(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, outcome=None) as c:
        client, visitor, _ = await started(c)
        await client.send({"t": "msg", "cid": "c1", "text": "hola"})
        await until(lambda: len(c.runner.held) == 1)
        sending = asyncio.create_task(c.reply(visitor, "the acknowledgement of it"))
        for _ in range(3):  # let the reply run as far as it can (no store I/O to wait on)
            await asyncio.sleep(0)
        await c.runner.release()
        await sending
        frames = [await client.next("msg"), await client.next("msg")]
        assert [(m["seq"], m["from"]) for m in frames] == [(1, "visitor"), (2, "agent")]


async def test_a_retriable_outcome_is_failed_with_retry_and_the_resend_goes_through(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, outcome=Outcome("bus unavailable", retriable=True)) as c:
        client, _, _ = await started(c)
        state = await client.say("c1", "hola")
        assert (state["state"], state["retry"]) == ("failed", True)
        c.runner.outcome = Outcome()
        assert (await client.say("c1", "hola"))["state"] == "sent"
        assert c.runner.taken[0].id == c.runner.taken[1].id  # the router drops a repeat


async def test_a_foreign_origin_is_refused_and_others_go_on(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, _, _ = await started(c)
        for origin in ("https://evil.example", "null"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await c.open(origin=origin)
            assert refused.value.status == 403
        async with c.http.post(c.url + "/http", data=b"{}", headers={"Origin": "https://x.y"}) as r:
            assert r.status == 403
            assert "origin" in (await r.json())["error"]
        await still_works(c, client, "ok1")


async def test_a_tampered_session_token_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, _, token = await started(c)
        payload, sig = token.split(".")
        forged = issue_session(b"not-our-key-at-all-000", "v_" + "A" * 22, time.time())
        for bad in (f"{payload[:-2]}xx.{sig}", forged, "garbage"):
            intruder = await c.hello(session=bad)
            code, reason = await intruder.closed()
            assert code == 4401, bad
            assert "session token" in reason or "malformed" in reason
        await still_works(c, client, "ok1")


async def test_a_token_of_the_previous_key_is_accepted_and_an_expired_one_is_not(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, previous_session_key=OLD_KEY, session_ttl="1h") as c:
        old = issue_session(OLD_KEY.encode(), "v_" + "B" * 22, time.time())
        client = await c.hello(session=old)
        welcome = await client.next("welcome")
        assert welcome["visitor"] == "v_" + "B" * 22
        assert welcome["session"] != old  # reissued under the current key
        expired = issue_session(KEY.encode(), "v_" + "C" * 22, time.time() - 7200)
        late = await c.hello(session=expired)
        assert await late.closed() == (4401, "session expired")


@pytest.mark.parametrize(
    ("key", "exp", "reason"),
    [
        (b"a-forger-who-guessed-wrong-0000", 3600, "identity token signature does not match"),
        (SHOP_KEY.encode(), -60, "identity token expired"),
    ],
    ids=["forged", "expired"],
)
async def test_a_forged_or_expired_identity_token_is_refused(
    tmp_path: Path, key: bytes, exp: int, reason: str
) -> None:
    async with chat(tmp_path) as c:
        client, _, _ = await started(c)
        token = sign_identity(key, "cust-7", "ana@example.com", int(time.time()) + exp)
        intruder = await c.hello(identity=token)
        assert await intruder.closed() == (4401, reason)
        await still_works(c, client, "ok1")


async def test_a_valid_identity_token_names_the_shop_customer(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        token = sign_identity(SHOP_KEY.encode(), "cust-7", "ana@example.com", int(time.time()) + 60)
        client = await c.hello(identity=token, form={"email": "typed@example.com", "name": "Ana"})
        await client.next("welcome")
        assert (await client.say("c1", "hi"))["state"] == "sent"
        [env] = c.runner.taken
        assert env.sender.address == "shop:cust-7" and env.sender.name == "Ana"
        # the shop's email is the one stated; the typed one does not replace it
        assert [(i.kind, i.value) for i in env.identities] == [("email", "ana@example.com")]


async def test_a_form_email_is_only_stated(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello(form={"email": "typed@example.com"})
        visitor = (await client.next("welcome"))["visitor"]
        await client.say("c1", "hi")
        [env] = c.runner.taken
        assert env.sender.address == visitor
        assert [(i.kind, i.value) for i in env.identities] == [("email", "typed@example.com")]


async def test_a_flood_is_rate_limited_with_the_reason_and_others_go_on(tmp_path: Path) -> None:
    async with chat(tmp_path, messages_per_minute=3) as c:
        calm, _, _ = await started(c)
        flood, _, _ = await started(c)
        for n in range(3):
            assert (await flood.say(f"f{n}", "spam"))["state"] == "sent"
        await flood.send({"t": "msg", "cid": "f3", "text": "spam"})
        code, reason = await flood.closed()
        assert code == 4429
        assert reason == "rate limited: more than 3 messages a minute in this chat"
        assert len(c.runner.taken) == 3
        await still_works(c, calm, "ok1")


async def test_new_chats_per_address_are_rate_limited(tmp_path: Path) -> None:
    async with chat(tmp_path, sessions_per_hour=2) as c:
        first, _, token = await started(c)
        await started(c)
        third = await c.hello()
        code, reason = await third.closed()
        assert code == 4429 and "new chats an hour" in reason
        back = await c.hello(session=token)  # an existing session may come back
        await back.next("welcome")
        await still_works(c, first, "ok1")


async def test_behind_a_trusted_proxy_new_chats_are_counted_per_visitor_address(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, sessions_per_hour=1, trusted_proxies=["127.0.0.0/8"]) as c:
        for visitor in ("203.0.113.5", "203.0.113.6"):  # two visitors: one chat each
            await (await c.hello(via=visitor)).next("welcome")
        # What the client wrote itself (left of the proxy's entry) does not make it new.
        again = await c.hello(via="198.51.100.9, 203.0.113.5")
        code, reason = await again.closed()
        assert code == 4429 and "new chats an hour" in reason


async def test_without_trusted_proxies_a_forwarded_for_header_is_not_believed(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path, sessions_per_hour=1) as c:
        await (await c.hello(via="203.0.113.5")).next("welcome")
        second = await c.hello(via="203.0.113.6")  # the same peer, whatever it says
        code, _ = await second.closed()
        assert code == 4429


async def test_an_oversized_message_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with chat(tmp_path, max_message_bytes=100) as c:
        client, _, _ = await started(c)
        other, _, _ = await started(c)
        await client.send({"t": "msg", "cid": "big", "text": "é" * 51})  # 102 bytes
        error = await client.next("error")
        assert error == {
            "t": "error",
            "code": "too_large",
            "cid": "big",
            "reason": "message of 102 bytes; at most 100",
        }
        assert c.runner.taken == []
        await still_works(c, client, "ok1")  # the same socket goes on
        await still_works(c, other, "ok2")
        # a frame far beyond the cap ends only that socket (aiohttp's 1009)
        await client.ws.send_str('{"t":"msg","cid":"x","text":"' + "x" * 10_000 + '"}')
        code, _ = await client.closed()
        assert code == 1009
        await still_works(c, other, "ok3")


async def test_resume_after_a_server_side_cut_shows_three_replies_once_in_order(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        await client.say("c1", "where is my order?")
        seen = list(client.messages())
        await c.reply(visitor, "reply 1")
        seen.append(await client.next("msg"))
        # The server cuts the socket (a proxy's idle timeout, a restart) mid-way.
        [ws] = list(c.connector._sockets)
        assert ws._req is not None and ws._req.transport is not None
        ws._req.transport.close()
        await c.reply(visitor, "reply 2")
        await c.reply(visitor, "reply 3")
        code, _ = await client.closed()
        assert code is not None
        back = await c.hello(session=token, last=seen[-1]["seq"])
        welcome = await back.next("welcome")
        assert welcome["last"] == 4
        seen += [await back.next("msg"), await back.next("msg")]
        assert [m["seq"] for m in seen] == [1, 2, 3, 4]
        assert [m["text"] for m in seen] == ["where is my order?", "reply 1", "reply 2", "reply 3"]
        # and nothing else comes: a ping's pong is next
        await back.send({"t": "ping"})
        assert await back.next() == {"t": "pong"}


async def test_a_reload_and_a_second_tab_get_the_whole_history_once(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        await client.say("c1", "hello")
        await c.reply(visitor, "hi, Chloé here")
        tab2 = await c.hello(session=token, last=0)
        await tab2.next("welcome")
        history = [await tab2.next("msg"), await tab2.next("msg")]
        assert [m["seq"] for m in history] == [1, 2]
        await c.reply(visitor, "anything else?")
        for tab in (client, tab2):  # both open tabs get the new one, once
            frame = await tab.next("msg")
            while frame["seq"] < 3:
                frame = await tab.next("msg")
            assert frame["text"] == "anything else?"
        assert [m["seq"] for m in tab2.messages()] == [1, 2, 3]


async def test_a_resend_with_the_same_client_id_creates_nothing_new(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, _, token = await started(c)
        first = await client.say("c1", "hola")
        await client.ws.close()
        again = await c.hello(session=token, last=1)
        await again.next("welcome")
        assert await again.say("c1", "hola") == first
        assert len(c.runner.taken) == 1
        assert await c.connector.sessions.last(again_visitor(again)) == 1


def again_visitor(client: Client) -> str:
    return str(client.frames[0]["visitor"])


async def test_a_redelivered_reply_is_shown_once(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, visitor, _ = await started(c)
        await c.reply(visitor, "one", native="r1")
        await c.reply(visitor, "one", native="r1")  # the runner's at-least-once redelivery
        await c.reply(visitor, "two", native="r2")
        assert [(await client.next("msg"))["text"] for _ in range(2)] == ["one", "two"]
        assert await c.connector.sessions.last(visitor) == 2


async def test_replies_while_away_are_kept_and_shown_on_return(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        await client.ws.close()
        await c.reply(visitor, "are you there?")
        back = await c.hello(session=token, last=0)
        await back.next("welcome")
        assert (await back.next("msg"))["text"] == "are you there?"


async def test_the_http_fallback_says_and_polls(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        headers = {"Origin": ORIGIN, "Content-Type": "text/plain"}

        async def post(path: str, body: dict[str, object]) -> list[dict[str, object]]:
            async with c.http.post(c.url + path, json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
                frames: list[dict[str, object]] = await r.json()
                return frames

        [welcome] = await post("/http", {"t": "hello", "session": None, "last": 0})
        token, visitor = welcome["session"], str(welcome["visitor"])
        [state] = await post("/http", {"t": "msg", "cid": "h1", "text": "hi", "session": token})
        assert (state["state"], state["seq"]) == ("sent", 1)
        await c.reply(visitor, "hello from http")
        mine, reply = await post("/poll", {"session": token, "last": 0})
        assert (mine["seq"], mine["text"]) == (1, "hi")
        assert (reply["seq"], reply["text"]) == (2, "hello from http")
        polling = asyncio.create_task(post("/poll", {"session": token, "last": 2}))
        await c.reply(visitor, "a third")  # a long-poll waiting is answered by the next one
        [third] = await polling
        assert third["seq"] == 3


async def test_bad_outbound_envelopes_fail_without_raising(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        _, visitor, _ = await started(c)

        good = reply(visitor, "ok")
        for bad in (
            good.model_copy(update={"direction": "in"}),
            good.model_copy(update={"thread_key": "someone-else"}),
            good.model_copy(update={"text": " "}),
        ):
            result = await c.connector.send(bad)
            assert result.status == "failed" and result.detail


async def test_the_widget_is_served_with_cache_headers(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        async with c.http.get(c.url + "/widget.js") as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "public, max-age=300"
            body = await r.text()
        from connectors.webchat.static import VERSION

        assert f"/v/{VERSION}/widget.css" not in body  # built at runtime from the version
        assert f'"{VERSION}"' in body
        async with c.http.get(f"{c.url}/v/{VERSION}/widget.css") as r:
            assert r.status == 200
            assert "immutable" in r.headers["Cache-Control"]
            assert r.headers["Content-Type"].startswith("text/css")
        async with c.http.get(f"{c.url}/v/0000/widget.css") as r:
            assert r.status == 404


async def test_a_silent_socket_is_closed_as_half_open(tmp_path: Path) -> None:
    async with chat(tmp_path, heartbeat="1s") as c:
        client, _, _ = await started(c)
        # the widget pings every heartbeat; this one says nothing for two
        assert await client.closed() == (4408, "no frame for two heartbeats")


async def test_memory_holds_only_live_sessions(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        await client.say("c1", "hi")
        assert c.connector.sessions.live() == 1
        await client.ws.close()
        await until(lambda: c.connector.sessions.live() == 0)
        await c.reply(visitor, "while away")  # kept in the store, not in memory
        assert c.connector.sessions.live() == 0
        back = await c.hello(session=token, last=1)
        await back.next("welcome")
        assert (await back.next("msg"))["text"] == "while away"


async def test_stopping_closes_sockets_for_a_reconnect(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, _, _ = await started(c)
        await c.connector.stop()
        assert await client.closed() == (1001, "the chat server is restarting")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await c.open()
        assert refused.value.status == 503


async def test_the_acknowledgement_and_standing_updates_become_standing_frames(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        assert (await client.say("c1", "hello"))["seq"] == 1
        due = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
        ack = reply(visitor, "Thanks, we will answer within 5 minutes.", "ack").model_copy(
            update={
                "sender": Sender(address="omnirouter", role="system"),
                "meta": {"purpose": "ack"},
                "standing": Standing(position=3, queue="general", due=due, wait=300),
            }
        )
        assert (await c.connector.send(ack)).status == "sent"
        assert (await c.connector.send(ack)).status == "sent"  # redelivered: nothing twice
        msg, standing = await client.next("msg"), await client.next("standing")
        assert (msg["seq"], msg["purpose"]) == (2, "ack")
        assert standing == {
            "t": "standing",
            "id": ack.id,
            "seq": 3,
            "position": 3,
            "queue": "general",
            "due": due.isoformat(),
            "wait": 300,
            "at": ack.received_at.isoformat(),
        }
        # An update: a standing part and no text is a standing frame alone.
        update = ack.model_copy(
            update={
                "id": "standing-1",
                "text": "",
                "meta": {"purpose": "standing"},
                "standing": Standing(position=2, queue="general", due=due, wait=240),
            }
        )
        assert (await c.connector.send(update)).status == "sent"
        assert (await client.next("standing"))["position"] == 2
        assert await c.connector.sessions.last(visitor) == 4
        # Numbered like messages: a returning tab gets them in order, and so does a poll.
        back = await c.hello(session=token, last=1)
        await back.next("welcome")
        assert [(await back.next())["t"] for _ in range(3)] == ["msg", "standing", "standing"]
        async with c.http.post(
            c.url + "/poll",
            json={"session": token, "last": 3},
            headers={"Origin": ORIGIN, "Content-Type": "text/plain"},
        ) as r:
            [polled] = await r.json()
        assert (polled["t"], polled["seq"], polled["position"]) == ("standing", 4, 2)


async def test_typing_is_told_live_and_seen_is_numbered_up_to_the_agent_s_word(
    tmp_path: Path,
) -> None:
    async with chat(tmp_path) as c:
        client, visitor, token = await started(c)
        tab = await c.hello(session=token, last=0)  # a second tab sees the visitor's msg
        await tab.next("welcome")
        assert (await client.say("c1", "hello"))["seq"] == 1
        first = (await tab.next("msg"))["at"]
        typing = reply(visitor, "", "typing-1").model_copy(update={"signal": "typing"})
        assert (await c.connector.send(typing)).status == "sent"
        assert await client.next("typing") == {
            "t": "typing",
            "name": "Chloé",
            "at": typing.received_at.isoformat(),
        }
        assert await c.connector.sessions.last(visitor) == 1  # not numbered, not kept
        assert (await client.say("c2", "are you there?"))["seq"] == 2
        # Seen as of the first message's moment: the second came after the agent's word.
        seen = reply(visitor, "", "seen-1").model_copy(
            update={"signal": "seen", "received_at": datetime.fromisoformat(first)}
        )
        assert (await c.connector.send(seen)).status == "sent"
        assert (await c.connector.send(seen)).status == "sent"  # redelivered: nothing twice
        frame = await client.next("seen")
        assert (frame["seq"], frame["upto"], frame["name"]) == (3, 1, "Chloé")
        later = reply(visitor, "", "seen-2").model_copy(update={"signal": "seen"})
        assert (await c.connector.send(later)).status == "sent"
        assert (await client.next("seen"))["upto"] == 2
        assert await c.connector.sessions.last(visitor) == 4
        # Seen again with nothing new to mark: no frame.
        again = reply(visitor, "", "seen-3").model_copy(update={"signal": "seen"})
        assert (await c.connector.send(again)).status == "sent"
        assert await c.connector.sessions.last(visitor) == 4
        # A returning tab gets the seen frames in order, and no typing.
        back = await c.hello(session=token, last=0)
        await back.next("welcome")
        replayed = [(await back.next())["t"] for _ in range(4)]
        assert replayed == ["msg", "msg", "seen", "seen"]
        # Nobody connected: a typing frame is simply not shown, and nothing is kept.
        for gone in (client, tab, back):
            await gone.ws.close()
        typing = reply(visitor, "", "typing-2").model_copy(update={"signal": "typing"})
        assert (await c.connector.send(typing)).status == "sent"
        assert await c.connector.sessions.last(visitor) == 4
