"""The IMAP intake against a real Dovecot: IDLE, checkpoints, restarts, UIDVALIDITY, rejects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from pathlib import Path

import pytest

from router.blobs import BlobStore
from router.connector import Incoming, Rejected
from router.connector.testing import MemoryCheckpoints
from tests.connectors.email.helpers import (
    connector,
    ids,
    mail,
    stop,
    take,
    take_then_stop,
)
from tests.harness.common import eventually
from tests.harness.dovecot import ImapAccount

pytestmark = pytest.mark.imap


async def test_idle_delivers_within_seconds_and_flags(imap_account: ImapAccount, tmp_path: Path):
    imap_account.append(mail(1))
    conn = connector(imap_account, tmp_path, MemoryCheckpoints())
    await conn.start()
    gen = conn.receive()
    try:
        assert ids(await take(gen, 1)) == ["<m1@example.net>"]
        waiting = asyncio.ensure_future(take(gen, 1))
        await asyncio.sleep(0.5)  # the intake is in IDLE now
        start = time.monotonic()
        await asyncio.to_thread(imap_account.append, mail(2))
        got = await waiting
        assert ids(got) == ["<m2@example.net>"]
        assert time.monotonic() - start < 5
        waiting = asyncio.ensure_future(take(gen, 1))  # flags are set before the next wait
        await asyncio.sleep(0.5)
        with imap_account.client() as c:
            c.select("INBOX")
            _, data = c.uid("search", None, "SEEN")
        assert data[0].split() == [b"1", b"2"]
        await stop(waiting)
    finally:
        await gen.aclose()
        await conn.stop()


class SlowCheckpoints(MemoryCheckpoints):
    """Checkpoints whose writes wait until `open` is set (a busy store)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def set_checkpoint(self, name: str, key: str, value: str) -> None:
        await self.open.wait()
        await super().set_checkpoint(name, key, value)


async def test_mail_acked_after_the_next_item_is_asked_for_is_flagged_before_the_wait(
    imap_account: ImapAccount, tmp_path: Path
):
    """The channel runner keeps several inputs in flight: it asks for the next item before
    the ones it has are acked. Those are flagged in this round, not after the next IDLE."""
    imap_account.append(mail(1), mail(2))
    checkpoints = SlowCheckpoints()
    checkpoints.open.set()  # the first start writes its position
    conn = connector(imap_account, tmp_path, checkpoints)
    await conn.start()
    gen = conn.receive()

    def seen() -> list[bytes]:
        with imap_account.client() as c:
            c.select("INBOX")
            _, data = c.uid("search", None, "SEEN")
        return list(data[0].split())

    async def both_seen() -> bool:
        return await asyncio.to_thread(seen) == [b"1", b"2"]

    def idling() -> bool:
        client = conn.intake.client
        return client is not None and client.has_pending_idle()

    acks: list[asyncio.Task[None]] = []
    try:
        first = await asyncio.wait_for(anext(gen), 10)
        second = await asyncio.wait_for(anext(gen), 10)
        checkpoints.open.clear()
        acks = [asyncio.create_task(item.ack()) for item in (first, second)]  # in flight
        waiting = asyncio.ensure_future(anext(gen))  # the runner asks for more at once
        # An intake that did not wait for the acks goes to IDLE now; one that waits never
        # does before the acks (this bound only gives the first its chance to show).
        with contextlib.suppress(AssertionError):
            await eventually(idling, 2)
        checkpoints.open.set()
        await asyncio.gather(*acks)
        await eventually(both_seen, every=0.2)
        await stop(waiting)
    finally:
        for task in acks:
            await stop(task)
        await gen.aclose()
        await conn.stop()


async def test_checkpoint_survives_restart_without_loss_or_duplicate(
    imap_account: ImapAccount, tmp_path: Path
):
    imap_account.append(*(mail(i) for i in range(5)))
    checkpoints = MemoryCheckpoints()
    conn = connector(imap_account, tmp_path, checkpoints)
    gen = conn.receive()
    first = await take(gen, 3)
    unacked = await anext(gen)  # on the bus but the daemon died before ack
    await gen.aclose()
    await conn.stop()
    imap_account.append(mail(5))
    conn = connector(imap_account, tmp_path, checkpoints)
    rest = await take_then_stop(conn, 3)
    assert ids(first) == [f"<m{i}@example.net>" for i in range(3)]
    assert unacked.envelope.meta["message_id"] == "<m3@example.net>"
    assert ids(rest) == [f"<m{i}@example.net>" for i in (3, 4, 5)]


async def test_killing_the_intake_repeatedly_loses_and_duplicates_nothing(
    imap_account: ImapAccount, tmp_path: Path
):
    total = 2000
    checkpoints = MemoryCheckpoints()
    published: list[str] = []
    kills = 0
    rng = random.Random(7)

    def appender() -> None:
        with imap_account.client() as c:
            for i in range(total):
                c.append("INBOX", None, None, mail(i))

    feeder = threading.Thread(target=appender)
    feeder.start()

    async def run_once() -> None:
        conn = connector(imap_account, tmp_path, checkpoints)
        gen = conn.receive()
        try:
            async for item in gen:
                assert isinstance(item, Incoming)
                published.append(item.envelope.meta["message_id"])
                if rng.random() < 0.01:
                    return  # crash between publish and ack
                await item.ack()
        finally:
            await gen.aclose()
            await conn.stop()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        task = asyncio.ensure_future(run_once())
        await asyncio.wait([task], timeout=rng.uniform(0.05, 0.6))
        if not task.done():
            task.cancel()  # killed wherever it was
        try:
            await task
        except asyncio.CancelledError:
            pass
        kills += 1
        if not feeder.is_alive() and len(set(published)) == total:
            break
    await asyncio.to_thread(feeder.join)
    expected = {f"<m{i}@example.net>" for i in range(total)}
    assert set(published) == expected
    duplicates = len(published) - len(set(published))
    assert kills > 10
    assert duplicates <= kills  # only what was published and not yet acked comes again


async def test_new_uidvalidity_resyncs_without_duplicates_or_misses(
    imap_account: ImapAccount, tmp_path: Path
):
    folder = "Support"
    imap_account.create(folder)
    no_id = b"From: x@example.net\r\nSubject: no id\r\n\r\nhash me\r\n"
    imap_account.append(*(mail(i) for i in range(4)), no_id, folder=folder)
    checkpoints = MemoryCheckpoints()
    conn = connector(imap_account, tmp_path, checkpoints, folder=folder)
    gen = conn.receive()
    before = await take(gen, 5)
    await gen.aclose()
    await conn.stop()

    imap_account.recreate(folder)  # same messages come back under a new UIDVALIDITY
    imap_account.append(*(mail(i) for i in range(4)), no_id, mail(10), mail(11), folder=folder)
    conn = connector(imap_account, tmp_path, checkpoints, folder=folder)
    gen = conn.receive()
    try:
        after = await take(gen, 2)
        with pytest.raises(TimeoutError):
            await take(gen, 1, seconds=1.5)
    finally:
        await gen.aclose()
        await conn.stop()
    assert len({i.envelope.id for i in before}) == 5
    assert ids(after) == ["<m10@example.net>", "<m11@example.net>"]


async def test_unparseable_mail_is_rejected_with_raw_ref_and_intake_goes_on(
    imap_account: ImapAccount, tmp_path: Path
):
    imap_account.append(b"Subject: no sender\r\n\r\nwho am I\r\n", mail(1))
    conn = connector(imap_account, tmp_path, MemoryCheckpoints())
    rejected, good = await take_then_stop(conn, 2)
    assert isinstance(rejected, Rejected)
    assert "no sender" in rejected.reason
    assert BlobStore(tmp_path / "blobs").get(rejected.raw_ref).startswith(b"Subject: no sender")
    assert ids([good]) == ["<m1@example.net>"]


async def test_hostile_mail_is_dead_lettered_with_the_reason_and_the_intake_goes_on(
    imap_account: ImapAccount, tmp_path: Path
):
    """The issue's message (100,000 `;` in Content-Type) kept a parse busy for minutes."""
    hostile = mail("h", extra="Content-Type: text/plain" + ";" * 100_000 + "\r\n")
    imap_account.append(hostile, mail(1))
    conn = connector(imap_account, tmp_path, MemoryCheckpoints())
    rejected, good = await take_then_stop(conn, 2)
    assert isinstance(rejected, Rejected)
    assert "Content-Type header field is 100011 bytes" in rejected.reason
    assert BlobStore(tmp_path / "blobs").get(rejected.raw_ref) == hostile
    assert ids([good]) == ["<m1@example.net>"]


def _costly(parts: int) -> bytes:
    """Within every limit but slow to parse (about 0.25 ms of CPU per part)."""
    body = "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * parts + "--b--\r\n"
    return mail("costly", extra='Content-Type: multipart/mixed; boundary="b"\r\n').replace(
        b"body costly\r\n", body.encode()
    )


async def test_mail_over_its_cpu_budget_is_dead_lettered_and_the_intake_goes_on(
    imap_account: ImapAccount, tmp_path: Path
):
    costly = _costly(8000)  # about 2 s of CPU; an ordinary message takes about 2 ms
    imap_account.append(costly, mail(1), mail(2))
    limits = {"max_parts": 10_000, "cpu_seconds": 0.2, "cpu_seconds_per_mib": 0}
    conn = connector(imap_account, tmp_path, MemoryCheckpoints(), limits=limits)
    rejected, *good = await take_then_stop(conn, 3, seconds=60)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "normalizing mail: more than its CPU budget (0.2 s)"
    assert BlobStore(tmp_path / "blobs").get(rejected.raw_ref) == costly
    assert ids(good) == ["<m1@example.net>", "<m2@example.net>"]


async def test_processed_mail_is_moved(imap_account: ImapAccount, tmp_path: Path):
    imap_account.create("Done")
    imap_account.append(mail(1), mail(2))
    conn = connector(
        imap_account, tmp_path, MemoryCheckpoints(), processed="move", processed_folder="Done"
    )
    gen = conn.receive()
    try:
        await take(gen, 2)
        waiting = asyncio.ensure_future(take(gen, 1))
        await asyncio.sleep(0.5)
        await stop(waiting)
    finally:
        await gen.aclose()
        await conn.stop()
    with imap_account.client() as c:
        assert c.select("INBOX")[1] == [b"0"]
        assert c.select("Done")[1] == [b"2"]


async def test_token_threads_a_reply_that_lost_its_headers_only_for_its_customer(
    imap_account: ImapAccount, tmp_path: Path
):
    checkpoints = MemoryCheckpoints()
    await checkpoints.set_checkpoint(
        "support-email", "ref:k7m2q9ta", '{"root": "<root@x>", "address": "ana@example.net"}'
    )
    imap_account.append(
        mail(1, subject="still broken [#k7m2q9ta]"),
        mail(2, subject="me too [#k7m2q9ta]", sender="mallory@example.org"),
    )
    conn = connector(imap_account, tmp_path, checkpoints)
    ana, mallory = await take_then_stop(conn, 2)
    assert ana.envelope.thread_key == "<root@x>"
    assert ana.envelope.meta["thread_source"] == "token"
    assert mallory.envelope.thread_key == "<m2@example.net>"


async def test_wrong_password_is_a_clear_error(imap_account: ImapAccount, tmp_path: Path):
    imap_account.password = "wrong"
    conn = connector(imap_account, tmp_path, MemoryCheckpoints())
    from connectors.email.errors import ImapError

    with pytest.raises(ImapError, match="login") as caught:
        await conn.start()
    assert not caught.value.retriable  # the daemon does not retry it (router/channels.py)
    await conn.stop()


async def test_a_dropped_connection_ends_the_intake_with_a_retriable_error(
    imap_account: ImapAccount, tmp_path: Path
):
    # The daemon's channel runner reconnects; the intake has no loop of its own.
    from connectors.email.errors import ImapError

    conn = connector(imap_account, tmp_path, MemoryCheckpoints())
    await conn.start()
    gen = conn.receive()
    try:
        waiting = asyncio.ensure_future(anext(gen))
        client = conn.intake.client
        assert client is not None
        await eventually(client.has_pending_idle)
        client.protocol.transport.abort()
        with pytest.raises(ImapError, match="connection lost") as caught:
            await asyncio.wait_for(waiting, 10)
        assert caught.value.retriable
        assert conn.intake.client is None  # closed, not reconnected
    finally:
        await gen.aclose()
        await conn.stop()
