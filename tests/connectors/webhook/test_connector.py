"""The connector through real HTTP: what it will not send, and the events route (signed
events in, 202 only once acked, refusals)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from connectors.webhook.connector import WebhookConnector
from router.connector import Incoming
from router.envelope import Command, envelope_id
from router.logs import RateLimiter
from tests.connectors.webhook.helpers import (
    delivery,
    listening,
    post_event,
    receiver,
    send,
    signed_headers,
    webhook_config,
)
from tests.harness.common import eventually

TOKEN = "conv-42.abcdefghijklmnopqrstuvwx"
REPLY = {"id": "slack-evt-1", "agent": "chloe", "token": TOKEN, "type": "reply", "text": "Hi Eva"}


# --- sending (the POST itself: test_client.py) -----------------------------------------


@pytest.mark.parametrize("url", [None, ""])
async def test_missing_url_fails(tmp_path: Path, url: str | None) -> None:
    async with listening(tmp_path) as hooks:
        result = await send(hooks, url)
        assert result.status == "failed"
        assert "no webhook url" in result.detail


async def test_an_agent_reached_elsewhere_gets_nothing_from_this_channel(tmp_path: Path) -> None:
    async with receiver() as tool, listening(tmp_path) as hooks:
        hooks.reach("chloe", tool.url(), channel="other-hooks")
        result = await hooks.connector.send(delivery())
        assert (result.status, tool.requests) == ("failed", [])
        hooks.sinks.clear()  # no longer an agent (config reloaded)
        assert (await hooks.connector.send(delivery())).status == "failed"


async def test_an_envelope_without_delivery_fails(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        hooks.reach("chloe", "http://127.0.0.1:1/x")
        env = delivery().model_copy(update={"delivery": None, "meta": {"to": ["x"]}})
        result = await hooks.connector.send(env)
        assert result.status == "failed"
        assert "only carries deliveries to agents" in result.detail


async def test_a_stopped_connector_defers(tmp_path: Path) -> None:
    async with receiver() as tool, listening(tmp_path) as hooks:
        await hooks.connector.stop()
        assert (await send(hooks, tool.url())).status == "retry"
        assert tool.requests == []
        await hooks.connector.start()
        assert (await send(hooks, tool.url())).status == "sent"


# --- the events route ------------------------------------------------------------------


async def next_incoming(connector: WebhookConnector) -> Incoming:
    items: AsyncIterator[Incoming] = connector.receive()
    return await asyncio.wait_for(anext(items), 5)


async def test_signed_reply_is_taken_in_and_answered_after_ack(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        assert hooks.connector.path == "/webhook/agent-hooks/events"
        posting = asyncio.create_task(post_event(hooks.url(), REPLY))
        incoming = await next_incoming(hooks.connector)
        env = incoming.envelope
        assert env.id == envelope_id("agent-hooks", "slack-evt-1")
        assert (env.kind, env.direction, env.channel, env.channel_type) == (
            "reply",
            "in",
            "agent-hooks",
            "webhook",
        )
        assert env.thread_key == "conv-42"
        assert env.sender.address == "chloe" and env.sender.role == "agent"
        assert env.text == "Hi Eva"
        assert env.meta["token"] == TOKEN
        # Not answered while the envelope is not yet on the bus...
        await asyncio.sleep(0.3)
        assert not posting.done()
        await incoming.ack()
        # ...and 202 with the envelope id once it is.
        assert await asyncio.wait_for(posting, 5) == (202, {"id": env.id})


async def test_same_event_twice_gives_the_same_envelope_id(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        ids = []
        for _ in range(2):
            posting = asyncio.create_task(post_event(hooks.url(), REPLY))
            incoming = await next_incoming(hooks.connector)
            await incoming.ack()
            status, answer = await posting
            assert status == 202
            ids.append(answer["id"])
        assert ids[0] == ids[1] == envelope_id("agent-hooks", "slack-evt-1")


async def test_command_accept(tmp_path: Path) -> None:
    event = {"id": "e2", "agent": "chloe", "token": TOKEN, "type": "command", "command": "accept"}
    async with listening(tmp_path, cfg=webhook_config(path="/hooks/in")) as hooks:
        assert hooks.url().endswith("/hooks/in")
        posting = asyncio.create_task(post_event(hooks.url(), event))
        incoming = await next_incoming(hooks.connector)
        assert incoming.envelope.kind == "command"
        assert incoming.envelope.command == Command(name="accept")
        await incoming.ack()
        assert (await posting)[0] == 202


def _tampered() -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(REPLY)
    return body.replace(b"Hi Eva", b"Send me your card"), signed_headers(body)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda b: signed_headers(b, key=b"not-the-channel-secret"), "signature does not match"),
        (
            lambda b: signed_headers(b, at=time.time() - 3600),
            "X-Omnirouter-Timestamp is outside the allowed clock skew",
        ),
        (
            lambda b: signed_headers(b, at=time.time() + 3600),
            "X-Omnirouter-Timestamp is outside the allowed clock skew",
        ),
        (lambda b: {"Content-Type": "application/json"}, "missing X-Omnirouter-Timestamp"),
        (
            lambda b: {"X-Omnirouter-Timestamp": str(int(time.time()))},
            "missing X-Omnirouter-Signature",
        ),
    ],
)
async def test_unsigned_or_stale_is_401(tmp_path: Path, make: Any, reason: str) -> None:
    body = orjson.dumps(REPLY)
    async with listening(tmp_path) as hooks:
        status, answer = await post_event(hooks.url(), body, headers=make(body))
        assert (status, answer) == (401, {"error": reason})
        assert hooks.connector.intake.queued() == 0


async def test_tampered_body_is_401(tmp_path: Path) -> None:
    body, headers = _tampered()
    async with listening(tmp_path) as hooks:
        assert await post_event(hooks.url(), body, headers=headers) == (
            401,
            {"error": "signature does not match"},
        )
        assert hooks.connector.intake.queued() == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (b"not json", "body"),
        ({**REPLY, "type": "wave"}, "type"),
        ({k: v for k, v in REPLY.items() if k != "token"}, "token"),
        ({k: v for k, v in REPLY.items() if k != "id"}, "id"),
        ({**REPLY, "text": None}, "text"),
        ({**REPLY, "type": "command", "text": None, "command": "fly"}, "command"),
    ],
)
async def test_bad_shape_is_400_naming_the_field(
    tmp_path: Path, event: dict[str, Any] | bytes, field: str
) -> None:
    async with listening(tmp_path) as hooks:
        status, answer = await post_event(hooks.url(), event)
        assert status == 400
        assert answer["error"].startswith(f"{field}: "), answer


async def test_an_agent_this_channel_does_not_reach_is_403(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        hooks.reach("ben", "http://127.0.0.1:9/ben", channel="other-hooks")
        for agent in ("ben", "nobody"):
            status, answer = await post_event(hooks.url(), {**REPLY, "agent": agent})
            assert status == 403
            assert answer == {"error": f"agent {agent!r} is not reached through this channel"}
        assert hooks.connector.intake.queued() == 0


async def test_too_large_is_413_before_anything_else(tmp_path: Path) -> None:
    big = orjson.dumps({**REPLY, "text": "x" * 3000})
    async with listening(tmp_path, cfg=webhook_config(max_body_bytes=2048)) as hooks:
        for headers in (signed_headers(big), {}):
            status, answer = await post_event(hooks.url(), big, headers=headers)
            assert status == 413
            assert "larger than 2048 bytes" in answer["error"]

        # A chunked body (no Content-Length) is cut off as it comes.
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        async with (
            aiohttp.ClientSession() as session,
            session.post(hooks.url(), data=chunks(), headers=signed_headers(big)) as resp,
        ):
            assert resp.status == 413


async def test_not_on_the_bus_in_time_is_503(tmp_path: Path) -> None:
    async with listening(tmp_path, ack_timeout=timedelta(seconds=0.3)) as hooks:
        status, answer = await post_event(hooks.url(), REPLY)
        assert status == 503
        assert "send the same event again" in answer["error"]


async def test_stopped_connector_answers_503(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        posting = asyncio.create_task(post_event(hooks.url(), REPLY))
        await eventually(lambda: hooks.connector.intake.queued() > 0, 5.0)
        await hooks.connector.stop()  # the waiting request is answered, not left hanging
        assert (await asyncio.wait_for(posting, 5))[0] == 503
        assert hooks.connector.intake.queued() == 0
        assert (await post_event(hooks.url(), REPLY))[0] == 503
        await hooks.connector.start()
        posting = asyncio.create_task(post_event(hooks.url(), REPLY))
        await (await next_incoming(hooks.connector)).ack()
        assert (await posting)[0] == 202


async def test_only_post(tmp_path: Path) -> None:
    async with (
        listening(tmp_path) as hooks,
        aiohttp.ClientSession() as session,
        session.get(hooks.url()) as resp,
    ):
        assert resp.status == 405


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_a_body_not_declared_json_is_415(tmp_path: Path, content_type: str | None) -> None:
    body = orjson.dumps(REPLY)
    headers = signed_headers(body)
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with listening(tmp_path) as hooks:
        status, answer = await post_event(hooks.url(), body, headers=headers)
        assert status == 415
        assert answer["error"].startswith("Content-Type must be application/json (UTF-8); got ")
        assert hooks.connector.intake.queued() == 0


async def test_json_with_a_utf8_charset_is_taken_in(tmp_path: Path) -> None:
    body = orjson.dumps(REPLY)
    headers = {**signed_headers(body), "Content-Type": "application/json; charset=UTF-8"}
    async with listening(tmp_path) as hooks:
        posting = asyncio.create_task(post_event(hooks.url(), body, headers=headers))
        await (await next_incoming(hooks.connector)).ack()
        assert (await asyncio.wait_for(posting, 5))[0] == 202


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_refusals_are_logged_rate_limited_and_without_what_was_sent(tmp_path: Path) -> None:
    clock = FakeClock()
    refusals = RateLimiter(2, 60.0, clock=clock)
    sent = [
        {**REPLY, "agent": "zelda-quist"},  # 403: an agent this channel does not reach
        {**REPLY, "zelda_quist": "x"},  # 400: an unknown field, named by the caller
        {**REPLY, "agent": "zelda-quist"},
        {**REPLY, "agent": "zelda-quist"},
        {**REPLY, "agent": "zelda-quist"},
    ]
    async with listening(tmp_path, refusals=refusals) as hooks:
        with capture_logs() as logs:
            for event in sent:
                assert (await post_event(hooks.url(), event))[0] in (400, 403)
            clock.now += 60
            assert (await post_event(hooks.url(), sent[0]))[0] == 403
    refused = [e for e in logs if e["event"] == "agent event refused"]
    assert [(e["status"], e["reason"]) for e in refused] == [
        (403, "agent not reached through this channel"),
        (400, "unknown field"),
        (403, "agent not reached through this channel"),
        (403, "agent not reached through this channel"),  # a minute later...
    ]
    assert refused[-1]["suppressed"] == 2  # ...with the count of those left out
    assert "zelda" not in repr(logs)
