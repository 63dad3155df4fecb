"""Tailing the CDR file: partial lines, acks and checkpoints, rotation, truncation, restarts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.phone.client import MAX_LINE, MAX_UNWRITTEN, CdrTail, Line, Position
from router.connector import DONE, Outcome
from router.connector.testing import MemoryCheckpoints
from router.errors import StoreError
from tests.connectors.phone.helpers import CHANNEL, write_lines
from tests.harness.common import eventually

WAIT = 5.0  # bound on any one line showing up
POLL = 0.01


def tail(path: Path, checkpoints: MemoryCheckpoints) -> CdrTail:
    return CdrTail(path, channel=CHANNEL, checkpoints=checkpoints, poll=POLL)


async def checkpointed(t: CdrTail, offset: int) -> None:
    """The tail is past `offset`, and the store says so (written in the background)."""
    assert t.acked is not None and t.acked.offset == offset

    async def stored() -> bool:
        position = await t.position()
        return position is not None and position.offset == offset

    await eventually(stored, WAIT)


async def take(lines: AsyncIterator[Line]) -> Line:
    return await asyncio.wait_for(anext(lines), WAIT)


async def take_all(t: CdrTail, n: int) -> list[str]:
    """The next `n` lines, each acked done; the generator closed after (a stop)."""
    lines = t.lines()
    try:
        out = []
        for _ in range(n):
            line = await take(lines)
            await t.ack(line, DONE)
            out.append(line.text)
        return out
    finally:
        await lines.aclose()


async def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"one\ntw")
    t = tail(path, MemoryCheckpoints())
    lines = t.lines()
    try:
        first = await take(lines)
        assert first.text == "one"
        await t.ack(first, DONE)
        pending = asyncio.ensure_future(anext(lines))
        # Many polls of the file (every POLL) see only the half line.
        done, _ = await asyncio.wait([pending], timeout=0.2)
        assert not done
        with path.open("ab") as f:
            f.write(b"o\r\n")
        second = await asyncio.wait_for(pending, WAIT)
        assert (second.text, second.start, second.end.offset) == ("two", 4, 9)
    finally:
        await lines.aclose()


async def test_the_checkpoint_moves_only_on_done_or_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["a", "b", "c"])
    cps = MemoryCheckpoints()
    t = tail(path, cps)
    lines = t.lines()
    try:
        a = await take(lines)
        assert t.acked is None  # yielded, not acked: nothing behind us
        await t.ack(a, DONE)
        await checkpointed(t, 2)
        b = await take(lines)
        await t.ack(b, Outcome("the bus is unavailable", retriable=True))
        await checkpointed(t, 2)
        again = await take(lines)  # offered again after a retriable error
        assert again.text == "b"
        await t.ack(again, Outcome("too large", retriable=False))  # dead-lettered: forgotten
        c = await take(lines)
        assert c.text == "c"
        await t.ack(c, DONE)
        await checkpointed(t, 6)
    finally:
        await lines.aclose()


async def test_lines_in_flight_checkpoint_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["a", "b", "c"])
    t = tail(path, MemoryCheckpoints())
    lines = t.lines()
    try:
        a, b, c = [await take(lines) for _ in range(3)]  # all in flight
        await t.ack(b, DONE)
        assert t.acked is None  # `a` is not done: nothing behind us yet
        await t.ack(a, DONE)
        await checkpointed(t, 4)
        # A retriable error on `c`: offered again (with anything after it).
        await t.ack(c, Outcome("the bus is unavailable", retriable=True))
        again = await take(lines)
        assert again.text == "c"
        await t.ack(c, DONE)  # a late ack of the earlier copy does not count
        await checkpointed(t, 4)
        await t.ack(again, DONE)
        await checkpointed(t, 6)
    finally:
        await lines.aclose()


async def test_restart_resumes_after_the_last_acked_line(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["a", "b", "c"])
    cps = MemoryCheckpoints()
    assert await take_all(tail(path, cps), 2) == ["a", "b"]
    write_lines(path, ["d"])
    assert await take_all(tail(path, cps), 2) == ["c", "d"]


async def test_rotation_while_running_reads_the_old_file_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["a"])
    t = tail(path, MemoryCheckpoints())
    lines = t.lines()
    try:
        a = await take(lines)
        await t.ack(a, DONE)
        # The PBX still writes to the renamed file until it reopens the path.
        path.rename(tmp_path / "Master.csv.1")
        write_lines(tmp_path / "Master.csv.1", ["b"])
        write_lines(path, ["c"])
        got = []
        for _ in range(2):
            line = await take(lines)
            await t.ack(line, DONE)
            got.append(line.text)
        assert got == ["b", "c"]
    finally:
        await lines.aclose()


async def test_rotation_while_stopped_finishes_the_old_file_found_by_identity(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["a", "b"])
    cps = MemoryCheckpoints()
    assert await take_all(tail(path, cps), 1) == ["a"]
    path.rename(tmp_path / "Master.csv.1")
    write_lines(path, ["c"])
    assert await take_all(tail(path, cps), 2) == ["b", "c"]


async def test_truncation_reads_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["aaaa", "bbbb"])
    cps = MemoryCheckpoints()
    assert await take_all(tail(path, cps), 2) == ["aaaa", "bbbb"]
    write_lines(path, ["x"], mode="w")  # copytruncate, then a new line
    assert await take_all(tail(path, cps), 1) == ["x"]


async def test_a_line_longer_than_the_limit_is_marked_not_held(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, ["x" * (3 * MAX_LINE), "ok"])
    t = tail(path, MemoryCheckpoints())
    lines = t.lines()
    try:
        big = await take(lines)
        assert (big.oversized, big.text, big.end.offset) == (True, "", 3 * MAX_LINE + 1)
        await t.ack(big, Outcome("too long", retriable=False))
        assert (await take(lines)).text == "ok"
    finally:
        await lines.aclose()


def test_a_checkpoint_that_is_not_ours_is_ignored() -> None:
    assert Position.decode("{}") is None
    assert Position.decode("not json") is None
    assert Position.decode(Position(1, 2, 3).encode()) == Position(1, 2, 3)


@pytest.mark.parametrize("seed", range(8))
async def test_every_line_once_across_restarts_at_random_points(tmp_path: Path, seed: int) -> None:
    """Lines appended (some half-written), a rotation, and stops at random points, some of
    them between a line's publish and its ack (a crash): every line is taken, and the
    only repeats are the lines whose ack a crash lost."""
    rng = random.Random(seed)
    path = tmp_path / "Master.csv"
    cps = MemoryCheckpoints()
    expected = [f"line-{i}" for i in range(60)]
    written = 0  # complete lines
    half = ""  # the part of the next line already written
    rotated = False
    taken: list[str] = []
    crashes = 0
    while len(set(taken)) < len(expected):
        # The PBX writes a few lines, maybe the first half of the next; once, it rotates.
        if written < len(expected):
            n = min(rng.randint(1, 8), len(expected) - written)
            batch = expected[written : written + n]
            with path.open("a", encoding="utf-8") as f:
                f.write(batch[0][len(half) :] + "\n" + "".join(x + "\n" for x in batch[1:]))
                written += n
                half = ""
                if written < len(expected) and rng.random() < 0.5:
                    half = expected[written][:3]
                    f.write(half)
            if not rotated and written >= 30 and not half:
                path.rename(tmp_path / "Master.csv.1")
                rotated = True
        t = tail(path, cps)
        lines = t.lines()
        try:
            for _ in range(rng.randint(1, 10)):
                if len(set(taken)) == written:
                    break
                line = await take(lines)
                taken.append(line.text)  # on the bus
                if rng.random() < 0.15:
                    crashes += 1  # the ack is lost: stop before it
                    break
                await t.ack(line, DONE)
        finally:
            await lines.aclose()
    assert set(taken) == set(expected)
    assert len(taken) - len(expected) <= crashes
    # In order, apart from the repeats.
    firsts = list(dict.fromkeys(taken))
    assert firsts == expected
    assert rotated


class BrokenStore(MemoryCheckpoints):
    async def set_checkpoint(self, name: str, key: str, value: str) -> None:
        raise StoreError("store: database is locked", retriable=True)


async def test_a_store_that_cannot_take_the_checkpoint_stops_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_lines(path, [f"line-{n}" for n in range(MAX_UNWRITTEN + 5)])
    t = tail(path, BrokenStore())
    lines = t.lines()
    try:
        with pytest.raises(StoreError, match="database is locked"):
            for _ in range(MAX_UNWRITTEN + 5):
                await t.ack(await take(lines), DONE)
    finally:
        await lines.aclose()
