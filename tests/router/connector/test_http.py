"""The kit's HTTP intake through a real listener: 2xx only once the envelope is on the bus,
and every refusal with its status and reason."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from multidict import CIMultiDict
from structlog.testing import capture_logs

from router.connector import Incoming, Outcome
from router.connector.http import HttpIntake, HttpRefusal, client_ip, require_json
from router.connector.signing import BadSignature
from router.envelope import Envelope, Sender, envelope_id, now_utc
from router.logs import RateLimiter
from tests.harness.common import eventually

CHANNEL = "chat"


def parse(request: web.Request, body: bytes) -> Envelope:
    require_json(request)
    obj = orjson.loads(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise HttpRefusal(400, f"id: required (got {body[:20]!r})", logged="bad field id")
    return Envelope(
        id=envelope_id(CHANNEL, obj["id"]),
        kind="message",
        direction="in",
        channel=CHANNEL,
        channel_type="test",
        thread_key="t",
        sender=Sender(address="visitor-1"),
        received_at=now_utc(),
        text="hi",
    )


def check(request: web.Request, _body: bytes) -> None:
    if request.headers.get("X-Key") != "right":
        raise BadSignature("signature does not match")


HEADERS = {"X-Key": "right", "Content-Type": "application/json"}


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[tuple[HttpIntake, TestClient[Any, Any]]]:
    intake = HttpIntake(CHANNEL, parse=parse, check=check, max_body_bytes=1024, **kw)
    app = web.Application()
    app.router.add_post("/in", intake.handle)
    intake.start()
    async with TestClient(TestServer(app)) as client:
        try:
            yield intake, client
        finally:
            intake.stop()


async def post(
    client: TestClient[Any, Any], body: bytes = b'{"id": "m1"}', headers: dict[str, str] = HEADERS
) -> tuple[int, Any]:
    async with client.post("/in", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def next_incoming(intake: HttpIntake) -> Incoming:
    return await asyncio.wait_for(anext(intake.receive()), 5)


async def test_answered_2xx_with_the_id_only_once_acked() -> None:
    async with serving() as (intake, client):
        posting = asyncio.create_task(post(client))
        incoming = await next_incoming(intake)
        await asyncio.sleep(0.2)
        assert not posting.done()  # not on the bus yet
        await incoming.ack()
        assert await asyncio.wait_for(posting, 5) == (202, {"id": envelope_id(CHANNEL, "m1")})


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        (Outcome("bus unavailable", retriable=True), 503, "bus unavailable; send the same"),
        (Outcome("too large for the bus"), 422, "request refused: too large for the bus"),
    ],
)
async def test_a_negative_ack_is_answered_by_its_outcome(
    outcome: Outcome, status: int, reason: str
) -> None:
    async with serving() as (intake, client):
        posting = asyncio.create_task(post(client))
        await (await next_incoming(intake)).ack(outcome)
        got_status, answer = await asyncio.wait_for(posting, 5)
        assert got_status == status and answer["error"].startswith(reason)


async def test_no_ack_in_time_is_503() -> None:
    async with serving(ack_timeout=timedelta(seconds=0.2)) as (_, client):
        status, answer = await post(client)
        assert status == 503 and "send the same request again" in answer["error"]


async def test_too_many_waiting_for_their_ack_is_503() -> None:
    async with serving(queue_size=1) as (intake, client):
        first = asyncio.create_task(post(client))
        incoming = await next_incoming(intake)  # taken by the runner, not yet on the bus
        assert await post(client, b'{"id": "m2"}') == (
            503,
            {"error": "too many requests in flight; try again"},
        )
        await incoming.ack()
        assert (await asyncio.wait_for(first, 5))[0] == 202
        second = asyncio.create_task(post(client, b'{"id": "m2"}'))  # room again
        await (await next_incoming(intake)).ack()
        assert (await asyncio.wait_for(second, 5))[0] == 202


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"x" * 1025, HEADERS, 413, "body larger than 1024 bytes"),
        (b"x" * 1025, {}, 413, "body larger than 1024 bytes"),  # size before signature
        (b'{"id": "m1"}', {**HEADERS, "X-Key": "wrong"}, 401, "signature does not match"),
        (b'{"id": "m1"}', {"X-Key": "right"}, 415, "Content-Type must be application/json"),
        (b"{}", HEADERS, 400, "id: required"),
    ],
)
async def test_refusals(body: bytes, headers: dict[str, str], status: int, reason: str) -> None:
    async with serving() as (intake, client):
        got_status, answer = await post(client, body, headers)
        assert got_status == status and answer["error"].startswith(reason), answer
        assert intake.queued() == 0


async def test_a_chunked_body_is_cut_off_as_it_comes() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    async with serving() as (_, client), client.post("/in", data=chunks(), headers=HEADERS) as resp:
        assert resp.status == 413


async def test_stopped_is_503_and_a_waiting_request_is_answered_on_stop() -> None:
    async with serving() as (intake, client):
        posting = asyncio.create_task(post(client))
        await eventually(lambda: intake.queued() == 1, 5)
        intake.stop()
        assert (await asyncio.wait_for(posting, 5))[0] == 503
        assert intake.queued() == 0
        assert await post(client) == (503, {"error": "not taking requests right now; try again"})
        intake.start()
        posting = asyncio.create_task(post(client))
        await (await next_incoming(intake)).ack()
        assert (await asyncio.wait_for(posting, 5))[0] == 202


async def test_refusals_are_logged_rate_limited_without_what_was_sent() -> None:
    clock_now = [0.0]
    refusals = RateLimiter(2, 60.0, clock=lambda: clock_now[0])
    async with serving(refusals=refusals, log_as="chat message") as (_, client):
        with capture_logs() as logs:
            for _ in range(4):
                assert (await post(client, b'{"zelda": 1}'))[0] == 400
            clock_now[0] += 60
            assert (await post(client, b'{"zelda": 1}'))[0] == 400
    refused = [e for e in logs if e["event"] == "chat message refused"]
    assert [(e["status"], e["reason"]) for e in refused] == [(400, "bad field id")] * 3
    assert refused[-1]["suppressed"] == 2
    assert "zelda" not in repr(logs)


async def test_a_client_that_gives_up_leaves_nothing_hanging() -> None:
    async with serving(ack_timeout=timedelta(seconds=30)) as (intake, client):
        timeout = aiohttp.ClientTimeout(total=0.3)
        with pytest.raises(TimeoutError):
            async with client.post("/in", data=b'{"id": "m1"}', headers=HEADERS, timeout=timeout):
                pass
        incoming = await next_incoming(intake)
        await incoming.ack()  # acking a request nobody waits for any more is harmless


def forwarded(peer: str, *hops: str) -> web.Request:
    headers = CIMultiDict([("X-Forwarded-For", hop) for hop in hops])
    return make_mocked_request("GET", "/", headers=headers).clone(remote=peer)


PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


@pytest.mark.parametrize(
    ("request_", "client"),
    [
        (forwarded("10.0.0.2", "203.0.113.5"), "203.0.113.5"),
        # The client's own entry is left of what our proxies appended, hop by hop.
        (forwarded("10.0.0.2", "198.51.100.1, 203.0.113.5, 10.0.0.3"), "203.0.113.5"),
        (forwarded("10.0.0.2", "198.51.100.1", "203.0.113.5"), "203.0.113.5"),  # two headers
        (forwarded("2001:db8::1", "2001:db9::7"), "2001:db9::7"),
        # Not from a proxy of ours: the header proves nothing.
        (forwarded("192.0.2.1", "203.0.113.5"), "192.0.2.1"),
        # Only proxies, or garbage where the client should be: the peer.
        (forwarded("10.0.0.2", "10.0.0.9"), "10.0.0.2"),
        (forwarded("10.0.0.2"), "10.0.0.2"),
        (forwarded("10.0.0.2", "not-an-ip"), "10.0.0.2"),
    ],
)
def test_the_client_is_the_nearest_address_that_is_not_a_trusted_proxy(
    request_: web.Request, client: str
) -> None:
    assert client_ip(request_, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip(forwarded("10.0.0.2", "203.0.113.5"), []) == "10.0.0.2"


def test_a_long_forwarded_chain_is_read_only_so_far() -> None:
    hops = ", ".join(["10.0.0.1"] * 10_000)
    assert client_ip(forwarded("10.0.0.2", "203.0.113.5, " + hops), PROXIES) == "10.0.0.2"
