"""What the in-memory connector and checkpoints promise beyond the contract suite's cases.

(The contract itself runs against them in tests/connectors/contract/.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.blobs import BlobStore
from router.connector import DONE, Incoming, Outcome, Services
from router.connector.testing import (
    MemoryChannelConfig,
    MemoryCheckpoints,
    MemoryConnector,
    memory_spec,
)
from router.envelope import encode
from router.errors import ConnectorError
from router.http import Routes
from tests.router.test_daemon import message


async def take(connector: MemoryConnector) -> Incoming:
    items = connector.receive()
    try:
        item = await asyncio.wait_for(anext(items), 5)
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    assert isinstance(item, Incoming)
    return item


async def test_an_input_unacked_at_stop_is_offered_first_after_the_next_start() -> None:
    chat = MemoryConnector("chat")
    await chat.start()
    first, second = chat.offer(message("chat", "m1")), chat.offer(message("chat", "m2"))
    taken = await take(chat)
    await chat.stop()
    await chat.start()
    assert chat.pending == [first, second]
    assert (await take(chat)).envelope.id == first
    # The first delivery's ack, late: the channel forgets the input after all.
    await taken.ack(DONE)
    assert chat.pending == [second]


async def test_an_ack_given_twice_is_a_bug_in_the_caller() -> None:
    chat = MemoryConnector("chat")
    chat.offer(message("chat", "m1"))
    item = await take(chat)
    await item.ack(Outcome("bus unavailable", retriable=True))
    with pytest.raises(RuntimeError, match="acked twice"):
        await item.ack(DONE)


async def test_raw_input_that_is_an_envelope_comes_in_as_one() -> None:
    chat = MemoryConnector("chat")
    env = message("chat", "m1")
    chat.offer_raw(encode(env), native_id="n1")
    item = await take(chat)
    assert item.envelope == env
    await item.ack(DONE)
    assert chat.outcome("n1") == DONE and chat.pending == []


async def test_fail_sends_refuses_every_send() -> None:
    chat = MemoryConnector("chat", MemoryChannelConfig(fail_sends=True))
    reply = message("chat", "r1").model_copy(update={"direction": "out", "kind": "reply"})
    result = await chat.send(reply)
    assert result.status == "failed" and chat.sent == [reply]


def test_the_spec_builds_connectors_and_keeps_them_by_name(tmp_path: Path) -> None:
    built: dict[str, MemoryConnector] = {}
    spec = memory_spec(built)
    assert spec.type == "memory" and spec.factory is not None
    settings = spec.config.model_validate({"fail_sends": True})
    services = Services(blobs=BlobStore(tmp_path / "blobs"), checkpoints=MemoryCheckpoints())
    connector = spec.factory("chat", settings, services)
    assert built == {"chat": connector}


async def test_refuse_start_makes_every_start_raise_until_cleared() -> None:
    chat = MemoryConnector("chat", MemoryChannelConfig(refuse_start="wrong password"))
    for _ in range(2):
        with pytest.raises(ConnectorError, match="wrong password") as info:
            await chat.start()
        assert info.value.retriable is False
    assert (chat.starts, chat.running) == (2, False)
    chat.fail_starts(None)  # the cause was fixed
    await chat.start()
    assert (chat.starts, chat.running) == (3, True)


async def test_a_passing_failure_fails_only_the_next_starts() -> None:
    chat = MemoryConnector("chat")
    chat.fail_starts(ConnectionResetError("connection reset"), times=2)
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await chat.start()
    await chat.start()
    await chat.stop()
    await chat.start()
    assert (chat.starts, chat.running) == (4, True)


async def test_a_broken_intake_raises_and_keeps_what_the_channel_holds() -> None:
    chat = MemoryConnector("chat")
    await chat.start()
    waiting = chat.offer(message("chat", "m1"))
    items = chat.receive()
    chat.break_intake(ConnectionResetError("peer went away"))
    with pytest.raises(ConnectionResetError, match="peer went away"):
        await asyncio.wait_for(anext(items), 5)
    assert chat.pending == [waiting]
    await chat.stop()
    await chat.start()  # reconnected: the input comes in after all
    assert (await take(chat)).envelope.id == waiting


async def test_lent_a_listener_it_serves_its_own_endpoint(tmp_path: Path) -> None:
    app = web.Application()
    services = Services(
        blobs=BlobStore(tmp_path / "blobs"), checkpoints=MemoryCheckpoints(), http=Routes(app)
    )
    MemoryConnector("chat", services=services)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/memory/chat/ping")
        assert (resp.status, await resp.text()) == (200, "pong from chat")


async def test_checkpoints_prune_only_old_keys_with_the_prefix() -> None:
    store = MemoryCheckpoints()
    for key in ("seen:a", "seen:b", "imap:INBOX"):
        await store.set_checkpoint("mail", key, "1")
    await store.set_checkpoint("other", "seen:a", "1")
    cut = datetime.now(UTC) + timedelta(seconds=1)
    assert await store.prune_checkpoints("mail", "seen:", cut) == 2
    assert await store.get_checkpoint("mail", "seen:a") is None
    assert await store.get_checkpoint("mail", "imap:INBOX") == "1"
    assert await store.get_checkpoint("other", "seen:a") == "1"
    assert await store.prune_checkpoints("mail", "seen:", cut - timedelta(days=1)) == 0
