"""The consume loop's delivery policy, on the embedded bus."""

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from router.bus import EmbeddedBus
from router.bus.base import Record
from router.bus.embedded import EmbeddedConsumer
from router.errors import BusError, EnvelopeError, StoreError
from tests.harness.common import eventually
from tests.router.consuming import (
    TOPICS,
    drain,
    kill,
    make_loop,
    run_until,
    running,
    uncommitted,
)


async def test_processed_records_are_committed(bus: EmbeddedBus) -> None:
    for i in range(5):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handler(r: Record) -> None:
        seen.append(r.value)
        if len(seen) == 5:
            done.set()

    await run_until(make_loop(bus, handler), done)
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    assert await uncommitted(bus, TOPICS.inbound, "g") == 0


async def test_retriable_failure_is_retried_in_place(bus: EmbeddedBus) -> None:
    for i in range(3):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    seen: list[bytes] = []
    failures = {b"1": 3}
    done = asyncio.Event()

    async def handler(r: Record) -> None:
        if failures.get(r.value, 0) > 0:
            failures[r.value] -= 1
            raise StoreError("database is locked")
        seen.append(r.value)
        if len(seen) == 3:
            done.set()

    await run_until(make_loop(bus, handler), done)
    assert seen == [b"0", b"1", b"2"]  # order kept, nothing skipped
    assert await uncommitted(bus, TOPICS.dlq, "dlq-reader") == 0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (EnvelopeError("kind: bad"), "EnvelopeError: kind: bad"),
        (KeyError("boom"), "unexpected KeyError"),
    ],
)
async def test_hopeless_record_is_dead_lettered_and_the_loop_goes_on(
    bus: EmbeddedBus, error: Exception, reason: str
) -> None:
    await bus.produce(TOPICS.inbound, b"k", b"poison")
    await bus.produce(TOPICS.inbound, b"k", b"fine")
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handler(r: Record) -> None:
        if r.value == b"poison":
            raise error
        seen.append(r.value)
        done.set()

    await run_until(make_loop(bus, handler), done)
    assert seen == [b"fine"]
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    body = orjson.loads(dead.value)
    assert reason in body["reason"]
    assert body["value"] == "poison"
    assert body["source"]["topic"] == TOPICS.inbound


async def test_stop_during_retry_leaves_record_for_redelivery(bus: EmbeddedBus) -> None:
    await bus.produce(TOPICS.inbound, b"k", b"stuck")
    attempts = 0
    tried = asyncio.Event()

    async def failing(r: Record) -> None:
        nonlocal attempts
        attempts += 1
        tried.set()
        raise StoreError("connection lost")

    await run_until(make_loop(bus, failing), tried)
    assert attempts >= 1
    [again] = await drain(bus, TOPICS.inbound, "g", 1)
    assert again.value == b"stuck"


async def test_after_batch_runs_before_commit_and_is_retried(bus: EmbeddedBus) -> None:
    from router.errors import BusError

    for i in range(3):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    seen: list[bytes] = []
    calls = 0
    done = asyncio.Event()

    async def handler(r: Record) -> None:
        seen.append(r.value)

    async def after_batch() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BusError("broker unreachable")
        if len(seen) == 3:
            done.set()

    loop = make_loop(bus, handler, after_batch=after_batch)
    await run_until(loop, done)
    assert calls >= 2
    assert await uncommitted(bus, TOPICS.inbound, "g") == 0  # committed after the retry


async def test_the_next_fetch_is_handled_while_the_last_ones_after_batch_runs(
    bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The router's outputs of one fetch go out while the next fetch is applied; no offset
    # is committed before its fetch's after-batch step is through.
    await bus.produce(TOPICS.inbound, b"k", b"a")
    seen: list[bytes] = []
    started, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls = 0
    commits: list[list[bytes]] = []
    commit = EmbeddedConsumer.commit

    async def counted(consumer: EmbeddedConsumer, records: Sequence[Record]) -> None:
        commits.append([r.value for r in records])
        await commit(consumer, records)

    monkeypatch.setattr(EmbeddedConsumer, "commit", counted)

    async def handler(r: Record) -> None:
        seen.append(r.value)

    async def after_batch() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await release.wait()
        elif seen == [b"a", b"b"]:
            done.set()

    async with running(make_loop(bus, handler, after_batch=after_batch), release):
        await asyncio.wait_for(started.wait(), 10)
        await bus.produce(TOPICS.inbound, b"k", b"b")
        await eventually(lambda: seen == [b"a", b"b"])  # handled meanwhile
        assert calls == 1  # its own step waits for the first one
        assert commits == []  # nothing before its fetch's step is through
        release.set()
        await asyncio.wait_for(done.wait(), 10)
    assert commits == [[b"a"], [b"b"]]
    assert await uncommitted(bus, TOPICS.inbound, "g") == 0


async def test_a_failing_after_batch_step_stops_the_loop_with_its_error(bus: EmbeddedBus) -> None:
    await bus.produce(TOPICS.inbound, b"k", b"a")

    async def handler(r: Record) -> None:
        pass

    async def after_batch() -> None:
        raise RuntimeError("a bug in the step")

    loop = make_loop(bus, handler, after_batch=after_batch)
    with pytest.raises(RuntimeError, match="a bug in the step"):
        await asyncio.wait_for(loop.run(), 10)
    assert await uncommitted(bus, TOPICS.inbound, "g") == 1


async def test_stop_while_after_batch_fails_commits_nothing(bus: EmbeddedBus) -> None:
    from router.errors import BusError

    await bus.produce(TOPICS.inbound, b"k", b"x")
    tried = asyncio.Event()

    async def handler(r: Record) -> None:
        pass

    async def after_batch() -> None:
        tried.set()
        raise BusError("broker unreachable")

    loop = make_loop(bus, handler, after_batch=after_batch)
    await run_until(loop, tried)
    [again] = await drain(bus, TOPICS.inbound, "g", 1)
    assert again.value == b"x"


async def test_batch_handler_parts_are_taken_in_order_and_unapplied_ones_one_by_one(
    bus: EmbeddedBus,
) -> None:
    for i in range(6):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    events: list[str] = []
    done = asyncio.Event()

    async def handler(r: Record) -> None:
        events.append(r.value.decode())

    async def handle_batch(records: Sequence[Record]):
        assert [r.value for r in records] == [b"%d" % i for i in range(6)]
        events.append("applied 0 1")
        yield records[0:2], True
        yield records[2:4], False  # e.g. its transaction failed: the loop takes each
        events.append("applied 4 5")
        yield records[4:6], True

    async def after_batch() -> None:
        done.set()

    await run_until(
        make_loop(bus, handler, after_batch=after_batch, handle_batch=handle_batch), done
    )
    assert events == ["applied 0 1", "2", "3", "applied 4 5"]
    assert await uncommitted(bus, TOPICS.inbound, "g") == 0  # all committed


async def test_stop_during_retry_of_an_unapplied_part_commits_only_what_came_before(
    bus: EmbeddedBus,
) -> None:
    for i in range(5):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    tried = asyncio.Event()
    went_on = False

    async def failing(r: Record) -> None:
        tried.set()
        raise StoreError("database is locked")

    async def handle_batch(records: Sequence[Record]):
        nonlocal went_on
        yield records[0:2], True
        yield records[2:4], False
        went_on = True  # never: the loop stopped on record 2
        yield records[4:], True

    await run_until(make_loop(bus, failing, handle_batch=handle_batch), tried)
    assert not went_on
    again = await drain(bus, TOPICS.inbound, "g", 3)
    assert [r.value for r in again] == [b"2", b"3", b"4"]


async def test_stop_between_parts_commits_the_parts_done_and_leaves_the_rest(
    bus: EmbeddedBus,
) -> None:
    for i in range(6):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    stopped = asyncio.Event()
    went_on = False

    async def handler(r: Record) -> None:
        raise AssertionError("every part here is applied by the batch handler")

    async def handle_batch(records: Sequence[Record]):
        nonlocal went_on
        yield records[0:2], True
        loop.stop()  # SIGTERM arrives while the first part is being applied
        stopped.set()
        yield records[2:4], True
        went_on = True  # never: the loop returns once the part in hand is done
        yield records[4:], True

    loop = make_loop(bus, handler, handle_batch=handle_batch)
    await run_until(loop, stopped)
    assert not went_on
    again = await drain(bus, TOPICS.inbound, "g", 2)
    assert [r.value for r in again] == [b"4", b"5"]


async def _killed_after(bus: EmbeddedBus, sends: int, commit_step: int | None) -> list[int]:
    """Run a loop over records 0..59 (one fetch) that is killed while its send number
    `sends` + 1 is in hand; return what the group gets again after the restart."""
    for i in range(60):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    sent: list[int] = []
    in_hand = asyncio.Event()

    async def send(r: Record) -> None:
        if len(sent) == sends:
            in_hand.set()
            await asyncio.Event().wait()  # the crash comes while this send is in hand
        sent.append(int(r.value))

    task = asyncio.create_task(make_loop(bus, send, commit_step=commit_step).run())
    await asyncio.wait_for(in_hand.wait(), 10)
    await kill(task)
    assert sent == list(range(sends))
    again = [int(r.value) for r in await drain(bus, TOPICS.inbound, "g", 60 - sends)]
    assert again == list(range(again[0], 60))  # in order, from the last commit on
    return again


async def test_a_killed_loop_with_commit_steps_repeats_a_step_not_the_fetch(
    bus: EmbeddedBus,
) -> None:
    again = await _killed_after(bus, 37, commit_step=5)
    repeated = 37 - again[0]
    # at most the step in flight and the records waiting behind it
    assert repeated <= 2 * 5


async def test_a_killed_loop_without_steps_repeats_its_whole_fetch(bus: EmbeddedBus) -> None:
    # The router's inbound loop: nothing is committed before its outbox is published.
    again = await _killed_after(bus, 37, commit_step=None)
    assert again[0] == 0


async def test_steps_commit_what_is_done_before_a_record_that_is_retried(
    bus: EmbeddedBus,
) -> None:
    for i in range(10):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    tried = asyncio.Event()

    async def send(r: Record) -> None:
        if r.value == b"6":
            tried.set()
            raise StoreError("tool unreachable")

    loop = make_loop(bus, send, commit_step=5)
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(tried.wait(), 10)

        async def committed_before_6() -> bool:
            return await loop.lag() == 4

        await eventually(committed_before_6)
    finally:
        await kill(task)
    again = await drain(bus, TOPICS.inbound, "g", 4)
    assert [r.value for r in again] == [b"6", b"7", b"8", b"9"]


async def test_a_failed_commit_step_is_not_fatal_and_a_later_commit_covers_it(
    bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = EmbeddedConsumer.commit
    calls = 0

    async def flaky_commit(self: EmbeddedConsumer, records: Sequence[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BusError("broker unreachable")
        await commit(self, records)

    monkeypatch.setattr(EmbeddedConsumer, "commit", flaky_commit)
    for i in range(20):
        await bus.produce(TOPICS.inbound, b"k", b"%d" % i)
    seen: list[bytes] = []
    done = asyncio.Event()

    async def send(r: Record) -> None:
        seen.append(r.value)
        if len(seen) == 20:
            done.set()

    await run_until(make_loop(bus, send, commit_step=3), done)
    assert seen == [b"%d" % i for i in range(20)]  # each once: the loop went on
    assert calls > 2
    assert await uncommitted(bus, TOPICS.inbound, "g") == 0


def test_commit_steps_cannot_go_with_an_after_batch_step(bus: EmbeddedBus) -> None:
    async def after_batch() -> None:
        pass

    with pytest.raises(ValueError, match="after_batch"):
        make_loop(bus, lambda r: None, after_batch=after_batch, commit_step=5)
