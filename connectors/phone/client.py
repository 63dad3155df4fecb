"""The phone connector's I/O: tailing the CDR file, and merging its sources into one intake.

Delivery guarantees of the tail: a line's position (the file's identity,
device and inode, and the offset after the line) is checkpointed only once
its envelope is acked done or dead-lettered, so a crash at any point offers
again at most the lines after the checkpoint; each gets the same envelope id
(the PBX's call id), so the router drops the repeat: exactly once in effect.
The checkpoint is written in the background, one store write at a time for
all the lines acked meanwhile (measured with bench/phone.py: a write per line
held the tail at a fifth of the bus's rate). Lines in flight (the runner puts
several on the bus at once) and lines acked whose position the store does not
have yet are together at most `MAX_UNWRITTEN`: a crash repeats those few.

- A partial last line (the PBX is writing it) waits for its newline.
- Rotation (the path now names another file): the old file, still open, is
  read to its end first. After a restart the checkpointed file is looked for
  by identity next to the path (`Master.csv.1`), and its rest read first.
- Truncation in place (the file is shorter than the checkpoint): read again
  from the start, and said so in the log.
- A line longer than `MAX_LINE` is refused (dead-lettered with its offset),
  never held in memory whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
import structlog

from connectors.phone.errors import CdrFileError
from router.connector import Checkpoints, Incoming, Outcome, Rejected

log = structlog.get_logger(__name__)

MAX_LINE = 64 * 1024
# Lines yielded and not yet acked, or acked and their position not yet in the store,
# before the tail waits: at most this many come again after a crash.
MAX_UNWRITTEN = 16
CHUNK = 64 * 1024
CHECKPOINT_KEY = "cdr"


@dataclass(frozen=True, slots=True)
class Position:
    """Where the tail is: a file by identity, and the offset of the next byte to read."""

    dev: int
    ino: int
    offset: int

    def same_file(self, st: os.stat_result) -> bool:
        return (self.dev, self.ino) == (st.st_dev, st.st_ino)

    def encode(self) -> str:
        return orjson.dumps({"dev": self.dev, "ino": self.ino, "offset": self.offset}).decode()

    @classmethod
    def decode(cls, text: str) -> Position | None:
        try:
            obj = orjson.loads(text)
            return cls(int(obj["dev"]), int(obj["ino"]), int(obj["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(slots=True)
class Line:
    """One complete line (without its newline) and the position after it."""

    text: str
    start: int
    end: Position
    oversized: bool = False  # longer than MAX_LINE: `text` is empty
    epoch: int = 0  # which reading of the file offered it (see `CdrTail.ack`)
    outcome: Outcome | None = None  # set by its ack


class CdrTail:
    """One CDR file, tailed from its checkpoint.

    Several lines may be in flight (yielded, not yet acked). The checkpoint
    moves over the lines at the head of the flight that are done or
    dead-lettered, in file order. A retriable ack starts a new reading from
    the checkpoint: that line and any after it are offered again (the later
    ones may be repeats; their envelope ids make them harmless).
    """

    def __init__(self, path: Path, *, channel: str, checkpoints: Checkpoints, poll: float) -> None:
        self.path = path
        self.channel = channel
        self._checkpoints = checkpoints
        self._poll = poll
        self._epoch = 0
        self._flight: deque[Line] = deque()
        self._space = asyncio.Event()
        # Behind us for good (acked), and what the store has: written by `_writer`.
        self._acked: Position | None = None
        self._written: Position | None = None
        self._dirty = asyncio.Event()
        self._unwritten = 0  # lines acked since the position the store has

    @property
    def acked(self) -> Position | None:
        """Where the lines behind us for good end (the store has it, or soon will)."""
        return self._acked

    async def position(self) -> Position | None:
        """The checkpoint in the store."""
        text = await self._checkpoints.get_checkpoint(self.channel, CHECKPOINT_KEY)
        return None if text is None else Position.decode(text)

    async def ack(self, line: Line, outcome: Outcome) -> None:
        line.outcome = outcome
        if line.epoch != self._epoch:
            return  # from an earlier reading: offered again since, that copy counts
        if not _taken(line):
            self._epoch += 1  # read again from the last line behind us
            self._flight.clear()
            self._space.set()
            return
        last = None
        while self._flight and _taken(self._flight[0]):
            last = self._flight.popleft()
            self._unwritten += 1
        if last is not None:
            self._acked = last.end
            self._dirty.set()
        self._space.set()

    async def _writer(self) -> None:
        """Write the latest acked position, one store write at a time. Acks that come
        during a write share the next one: a crash repeats at most those lines."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._flush()

    async def _flush(self) -> None:
        acked, lines = self._acked, self._unwritten
        if acked is not None and acked != self._written:
            await self._checkpoints.set_checkpoint(self.channel, CHECKPOINT_KEY, acked.encode())
            self._written = acked
            self._unwritten = max(self._unwritten - lines, 0)
            self._space.set()

    async def lines(self) -> AsyncIterator[Line]:
        """Every line after the checkpoint, then new ones as they come."""
        self._epoch += 1  # a new intake: whatever was in flight is offered again
        self._flight.clear()
        self._acked = self._written = await self.position()
        self._unwritten = 0
        writer = asyncio.create_task(self._writer())
        try:
            while True:
                epoch = self._epoch
                reading = self._read(self._acked, epoch)
                async with contextlib.aclosing(reading):
                    async for line in reading:
                        while self._full() and self._epoch == epoch:
                            await self._wait_for_space(writer)
                        _raise_if_failed(writer)
                        if self._epoch != epoch:
                            break
                        line.epoch = epoch
                        self._flight.append(line)
                        yield line
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer  # its failure, if any, was raised above
            try:
                await self._flush()  # what was acked before the stop
            except Exception as exc:  # the store is unavailable: those lines come again
                log.warning(
                    "CDR checkpoint not written at stop",
                    channel=self.channel,
                    error=str(exc),
                )

    async def _wait_for_space(self, writer: asyncio.Task[None]) -> None:
        self._space.clear()
        space = asyncio.ensure_future(self._space.wait())
        try:
            await asyncio.wait([space, writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            space.cancel()
        _raise_if_failed(writer)

    def _full(self) -> bool:
        """Too many lines in flight or acked and not yet in the store (what a crash would
        offer again)."""
        return len(self._flight) + self._unwritten >= MAX_UNWRITTEN

    async def _read(self, position: Position | None, epoch: int) -> AsyncGenerator[Line, None]:
        """The lines from `position` on, across rotations, until the epoch changes."""
        while self._epoch == epoch:
            handle, st = await self._open(position)
            try:
                position = self._resume(st, position)
                async for line in self._follow(handle, position, epoch):
                    yield line
                    position = line.end
                # Rotated away (read to its end), truncated, or a new epoch.
                position = None
            finally:
                handle.close()

    async def _open(self, position: Position | None) -> tuple[IO[bytes], os.stat_result]:
        """The checkpointed file if it was rotated away and is still there, else the path's."""
        if position is not None:
            try:
                current = self.path.stat()
            except FileNotFoundError:
                current = None
            if current is None or not position.same_file(current):
                old = self.rotated_away(position)
                if old is not None:
                    with contextlib.suppress(FileNotFoundError):
                        handle = old.open("rb")
                        return handle, os.fstat(handle.fileno())
        while True:
            try:
                handle = self.path.open("rb")
            except FileNotFoundError:
                await asyncio.sleep(self._poll)  # not created yet, or between rotations
                continue
            except OSError as exc:
                raise CdrFileError(f"cannot open {self.path}: {exc.strerror}") from exc
            return handle, os.fstat(handle.fileno())

    def _resume(self, st: os.stat_result, position: Position | None) -> Position:
        """Where to read the open file from: the checkpoint if it is this file, else 0."""
        if position is None or not position.same_file(st):
            return Position(st.st_dev, st.st_ino, 0)
        if st.st_size < position.offset:
            self._truncated(st.st_size, position.offset)
            return Position(st.st_dev, st.st_ino, 0)
        return position

    def _truncated(self, size: int, offset: int) -> None:
        log.warning(
            "CDR file truncated: reading it again from the start",
            channel=self.channel,
            path=str(self.path),
            size=size,
            checkpoint=offset,
        )

    def rotated_away(self, position: Position) -> Path | None:
        """The checkpointed file, if it now lives next to the path under another name."""
        with contextlib.suppress(OSError):
            for sibling in sorted(self.path.parent.iterdir()):
                if sibling != self.path and sibling.name.startswith(self.path.name):
                    with contextlib.suppress(OSError):
                        if position.same_file(sibling.stat()):
                            return sibling
        return None

    async def _follow(
        self, handle: IO[bytes], position: Position, epoch: int
    ) -> AsyncIterator[Line]:
        """Lines of `handle` from `position`; at its end, wait for more unless the path has
        been rotated to another file (then the rest of this one, and return)."""
        handle.seek(position.offset)
        offset = position.offset
        buffer = b""
        skipping = False  # inside a line longer than MAX_LINE
        while self._epoch == epoch:
            chunk = handle.read(CHUNK)
            if chunk:
                buffer += chunk
                while (nl := buffer.find(b"\n")) >= 0:
                    raw, buffer = buffer[:nl], buffer[nl + 1 :]
                    start, offset = offset, offset + nl + 1
                    end = Position(position.dev, position.ino, offset)
                    if skipping:
                        skipping = False
                        yield Line("", start, end, oversized=True)
                    elif len(raw) > MAX_LINE:
                        yield Line("", start, end, oversized=True)
                    elif raw.strip():
                        yield Line(raw.rstrip(b"\r").decode("utf-8", "replace"), start, end)
                if len(buffer) > MAX_LINE:
                    offset += len(buffer)
                    buffer, skipping = b"", True
                continue
            size = os.fstat(handle.fileno()).st_size
            if size < offset:
                self._truncated(size, offset)
                return
            if self._rotated(position):
                # Only complete lines count: a rotated file's partial tail was never finished.
                if buffer or skipping:
                    log.warning(
                        "CDR file rotated with an unfinished last line: left unread",
                        channel=self.channel,
                        path=str(self.path),
                        offset=offset,
                    )
                return
            await asyncio.sleep(self._poll)

    def _rotated(self, position: Position) -> bool:
        try:
            return not position.same_file(self.path.stat())
        except FileNotFoundError:
            return False  # renamed, the new one not created yet: keep reading the old


def _raise_if_failed(writer: asyncio.Task[None]) -> None:
    """The checkpoint writer's failure (the store is unavailable): the intake stops with
    it, and the runner starts it again after a backoff."""
    if writer.done() and not writer.cancelled() and (exc := writer.exception()) is not None:
        raise exc


def _taken(line: Line) -> bool:
    """Acked done, or dead-lettered: never offered again."""
    return line.outcome is not None and (line.outcome.done or not line.outcome.retriable)


Item = Incoming | Rejected


async def merge(*sources: AsyncIterator[Item]) -> AsyncIterator[Item]:
    """One intake from several, each in its own order. An item taken from a source and
    not yet from here when the intake closes was never acked: its source offers it again
    (the tail on its next reading, an HTTP sender after its 503)."""
    queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=1)  # sources wait for the reader

    async def pump(source: AsyncIterator[Item]) -> None:
        async with contextlib.aclosing(source):  # type: ignore[type-var]
            async for item in source:
                await queue.put(item)

    tasks = [asyncio.create_task(pump(s)) for s in sources]
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait([getter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            for task in done:
                if (exc := task.exception()) is not None:
                    raise exc  # a source failed: the runner reconnects
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
