"""A visitor through the real daemon: the router's acknowledgement and an agent's reply
(written in her tool, through the router) reach the visitor's socket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from tests.connectors.webchat.daemon import closed_day, site
from tests.harness.common import eventually

ORIGIN = "http://shop.test"


async def test_a_visitor_gets_the_acknowledgement_and_the_agents_reply(tmp_path: Path) -> None:
    async with site(tmp_path, ORIGIN) as s, aiohttp.ClientSession() as http:
        async with http.ws_connect(s.chat_url, headers={"Origin": ORIGIN}) as ws:
            await ws.send_json({"t": "hello", "session": None, "last": 0})
            frames: list[dict[str, object]] = []

            async def until(t: str, **match: object) -> dict[str, object]:
                while True:
                    frame: dict[str, object] = await ws.receive_json(timeout=20)
                    frames.append(frame)
                    if frame["t"] == t and all(frame.get(k) == v for k, v in match.items()):
                        return frame

            welcome = await until("welcome")
            assert welcome["title"] == "Acme Support"
            await ws.send_json({"t": "msg", "cid": "c1", "text": "Where is my order?"})
            assert (await until("state", cid="c1"))["state"] == "sent"
            ack = await until("msg", purpose="ack")
            assert ack["from"] == "system" and "we will answer" in str(ack["text"])
            joined = await until("assigned")  # who has the chat, before they write
            assert (joined["seq"], joined["name"]) == (3, "Chloé Martin")
            await eventually(lambda: len(s.tool.requests) >= 1, 20)
            await s.agent_says("Hi, it ships today.")
            reply = await until("msg", **{"from": "agent"})
            assert reply["text"] == "Hi, it ships today." and reply["name"] == "Chloé Martin"
            assert [f["seq"] for f in frames if f["t"] == "msg"] == [1, 2, 4]


async def test_out_of_hours_the_welcome_says_when_we_open_and_a_message_is_taken(
    tmp_path: Path,
) -> None:
    async with site(tmp_path, ORIGIN) as s, aiohttp.ClientSession() as http:
        async with http.ws_connect(s.closed_chat_url, headers={"Origin": ORIGIN}) as ws:
            await ws.send_json({"t": "hello", "session": None, "last": 0})
            welcome = await ws.receive_json(timeout=20)
            opens = datetime.fromisoformat(welcome["opens_at"])
            assert opens > datetime.now(UTC) + timedelta(days=1)
            assert opens.strftime("%a").lower() == closed_day() and opens.hour == 9
            assert welcome["look"]["form"] == ["name", "email"]
            await ws.send_json({"t": "msg", "cid": "c1", "text": "Is the blue teapot back?"})
            while (frame := await ws.receive_json(timeout=20)).get("purpose") != "ack":
                pass
            assert "we open on " in frame["text"]
