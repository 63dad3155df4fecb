"""The web chat's "call me back" frame: a `requested` call envelope on the bus, the number
a stated phone identity (the one typed, else the pre-chat form's), or a clear error."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.webchat.errors import BadFrame
from connectors.webchat.inbound import parse
from tests.connectors.webchat.helpers import Client, chat, until


async def asked(client: Client, cid: str, **frame: str) -> dict[str, object]:
    """Send a callback frame; the `state` or `error` frame answering it."""
    await client.send({"t": "callback", "cid": cid, **frame})
    while True:
        answer = await client.next()
        if answer["t"] in ("state", "error") and answer.get("cid") == cid:
            return answer


async def test_call_me_back_is_a_requested_call_with_the_number_stated(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello(form={"email": "eva@example.com", "phone": "+34 600 000 000"})
        visitor = (await client.next("welcome"))["visitor"]
        assert (await asked(client, "cb1", phone="600 111 222"))["state"] == "sent"
        [env] = c.runner.taken
        assert (env.kind, env.thread_key, env.sender.role) == ("call", visitor, "customer")
        assert env.call is not None
        assert (env.call.direction, env.call.disposition) == ("inbound", "requested")
        # The number typed replaces the form's: one phone, stated.
        assert [(i.kind, i.value) for i in env.identities] == [
            ("email", "eva@example.com"),
            ("phone", "600 111 222"),
        ]
        msg = next(f for f in client.messages() if f.get("cid") == "cb1")
        assert (msg["from"], msg["text"]) == ("visitor", "Please call me back on 600 111 222")
        # The same request again (a resend) is the same envelope: nothing new.
        assert (await asked(client, "cb1", phone="600 111 222"))["state"] == "sent"
        assert len(c.runner.taken) == 1


async def test_without_a_number_it_uses_the_form_s_or_asks_for_one(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        with_form = await c.hello(form={"phone": "+34 600 111 222"})
        await with_form.next("welcome")
        assert (await asked(with_form, "cb1"))["state"] == "sent"
        [env] = c.runner.taken
        assert [(i.kind, i.value) for i in env.identities] == [("phone", "+34 600 111 222")]

        guest = await c.hello()
        await guest.next("welcome")
        error = await asked(guest, "cb2")
        assert (error["code"], error["reason"]) == ("phone_required", "a phone number to call")
        error = await asked(guest, "cb3", phone="call me maybe")
        assert (error["code"], error["reason"]) == (
            "bad_phone",
            "not a phone number: call me maybe",
        )
        assert len(c.runner.taken) == 1  # nothing queued for either; the socket goes on
        assert (await guest.say("m1", "ok then"))["state"] == "sent"
        await until(lambda: len(c.runner.taken) == 2)


async def test_the_http_fallback_takes_it_too(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client = await c.hello()
        session = (await client.next("welcome"))["session"]
        headers = {"Origin": "https://shop.example.com"}
        frame = {"t": "callback", "cid": "cb1", "phone": "+34600111222", "session": session}
        async with c.http.post(f"{c.url}/http", json=frame, headers=headers) as r:
            frames = await r.json()
        assert frames[-1] == {"t": "state", "cid": "cb1", "state": "sent", "seq": 1}
        [env] = c.runner.taken
        assert env.call is not None and env.call.disposition == "requested"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"t": "callback"}, "cid: expected"),
        ({"t": "callback", "cid": "c1", "phone": 34600111222}, "phone: expected a string"),
    ],
)
def test_a_malformed_callback_frame_is_refused(frame: dict[str, object], reason: str) -> None:
    with pytest.raises(BadFrame, match=reason):
        parse(orjson.dumps(frame))
