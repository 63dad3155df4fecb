"""Chat sessions: each one's numbered message log, kept durably, and its open sockets.

The log lives in the checkpoint store the daemon lends connectors (SQLite or
PostgreSQL, the router's own store), under the channel's name:

    n:<visitor>          the session's highest seq
    m:<visitor>:<seq>    one `msg` frame (JSON)
    c:<visitor>:<cid>    the seq a visitor message (client id) got: resends create nothing
    o:<visitor>:<id>     the seq an outgoing envelope got: a redelivery shows nothing twice
    i:<visitor>          who the visitor is (sender address, name, identities)
    f:<visitor>:<sha256> a file the visitor uploaded (its attachment, JSON): only the
                         session that uploaded it can put it on a message

So replies written while nobody is connected are there when the visitor
returns, across daemon restarts, and keys not written for `session_ttl` are
pruned. A seq is given and written under the session's lock, and every open
socket of the session gets the frame in the same order; a socket that
(re)joins is sent the log above the seq it has, under the same lock, so it
misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from router.connector import Checkpoints

Push = Callable[[dict[str, Any]], None]  # hands a frame to one socket's writer, never blocks
Append = Callable[[dict[str, Any], str], Awaitable[int]]
Frame = Callable[[int], tuple[dict[str, Any], str]]  # a frame and its dedup key, from a seq
PREFIXES = ("n:", "m:", "c:", "o:", "i:", "f:")
# How far back a `seen` looks for the visitor's latest message: one read per frame, and
# a visitor's messages are rarely further back than a few agent replies.
SEEN_LOOK_BACK = 50


def _at(frame: dict[str, Any]) -> datetime:
    at = frame.get("at")
    return datetime.fromisoformat(at) if isinstance(at, str) else datetime.max.replace(tzinfo=UTC)


class Session:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # seq allocation, (re)joins, a visitor message in flight
        self.last: int | None = None  # loaded on first use
        self.sockets: set[Push] = set()
        self.users = 0  # operations under way; with no sockets either, memory forgets it


class Sessions:
    def __init__(self, channel: str, store: Checkpoints) -> None:
        self._channel = channel
        self._store = store
        self._sessions: dict[str, Session] = {}

    @asynccontextmanager
    async def _use(self, visitor: str) -> AsyncIterator[Session]:
        """The session's live state while an operation runs. Memory holds a session only
        while it has sockets or operations (its log is in the store), and never two for
        one visitor: that would give one seq twice."""
        session = self._sessions.get(visitor)
        if session is None:
            session = self._sessions[visitor] = Session()
        session.users += 1
        try:
            yield session
        finally:
            session.users -= 1
            self._forget_idle(visitor, session)

    def _forget_idle(self, visitor: str, session: Session) -> None:
        if not session.users and not session.sockets:
            self._sessions.pop(visitor, None)

    def live(self) -> int:
        """Sessions held in memory (open sockets or operations under way)."""
        return len(self._sessions)

    async def _get(self, key: str) -> str | None:
        return await self._store.get_checkpoint(self._channel, key)

    async def _set(self, key: str, value: str) -> None:
        await self._store.set_checkpoint(self._channel, key, value)

    async def _last(self, visitor: str, session: Session) -> int:
        if session.last is None:
            session.last = int(await self._get(f"n:{visitor}") or 0)
        return session.last

    async def last(self, visitor: str) -> int:
        async with self._use(visitor) as session, session.lock:
            return await self._last(visitor, session)

    @asynccontextmanager
    async def intake(self, visitor: str) -> AsyncIterator[Append]:
        """Held while one visitor message goes to the bus; yields its `append`.

        The whole session waits meanwhile (the next message, a reply, a tab joining):
        the message's seq is given only once it is on the bus, and nothing may take
        a seq before it (the router's acknowledgement of it, above all).
        """
        async with self._use(visitor) as session, session.lock:

            async def append(frame: dict[str, Any], dedup: str) -> int:
                return await self._append(visitor, session, frame, dedup)

            yield append

    async def join(
        self, visitor: str, push: Push, after: int, greet: Callable[[int], dict[str, Any]]
    ) -> None:
        """Subscribe `push` to the session: first `greet(highest seq)`, then every message
        above `after`, then every new one."""
        async with self._use(visitor) as session, session.lock:
            last = await self._last(visitor, session)
            push(greet(last))
            for seq in range(after + 1, last + 1):
                raw = await self._get(f"m:{visitor}:{seq}")
                if raw is not None:  # pruned long ago
                    push(orjson.loads(raw))
            session.sockets.add(push)

    def leave(self, visitor: str, push: Push) -> None:
        session = self._sessions.get(visitor)
        if session is None:
            return
        session.sockets.discard(push)
        self._forget_idle(visitor, session)

    async def sent(self, visitor: str, cid: str) -> int | None:
        """The seq the visitor message `cid` got, if it was sent already."""
        raw = await self._get(f"c:{visitor}:{cid}")
        return None if raw is None else int(raw)

    async def append(self, visitor: str, frame: dict[str, Any], dedup: str) -> int:
        """Give `frame` the next seq, keep it, send it to the session's sockets; a `dedup`
        key (`c:<cid>` or `o:<envelope id>`) seen before returns its seq and sends nothing."""
        async with self._use(visitor) as session, session.lock:
            return await self._append(visitor, session, frame, dedup)

    async def _append(
        self, visitor: str, session: Session, frame: dict[str, Any], dedup: str
    ) -> int:
        kind, _, ident = dedup.partition(":")
        dedup_key = f"{kind}:{visitor}:{ident}"
        done = await self._get(dedup_key)
        if done is not None:
            return int(done)
        seq = await self._last(visitor, session) + 1
        frame = {**frame, "seq": seq}
        await self._set(f"m:{visitor}:{seq}", orjson.dumps(frame).decode())
        await self._set(f"n:{visitor}", str(seq))
        await self._set(dedup_key, str(seq))
        session.last = seq
        for push in list(session.sockets):
            push(frame)
        return seq

    def tell(self, visitor: str, frame: dict[str, Any]) -> int:
        """Send a transient frame (not numbered, not kept) to the session's open sockets;
        how many got it."""
        session = self._sessions.get(visitor)
        sockets = list(session.sockets) if session is not None else []
        for push in sockets:
            push(frame)
        return len(sockets)

    async def seen(self, visitor: str, when: datetime, frame: Frame) -> int:
        """Append the frame `frame(upto)` gives, `upto` being the seq of the latest visitor
        message taken in by `when`, among the last SEEN_LOOK_BACK frames. A `seen` that
        marks nothing new (none found, or the latest `seen` covers it) appends nothing:
        a tool may say "seen" every time the agent looks."""
        async with self._use(visitor) as session, session.lock:
            last = await self._last(visitor, session)
            upto, told = 0, 0
            for seq in range(last, max(0, last - SEEN_LOOK_BACK), -1):
                raw = await self._get(f"m:{visitor}:{seq}")
                shown = orjson.loads(raw) if raw is not None else {}
                if shown.get("t") == "seen" and not told:
                    told = int(shown.get("upto") or 0)
                if shown.get("from") == "visitor" and _at(shown) <= when:
                    upto = seq
                    break
            if upto <= told:
                return last
            built, dedup = frame(upto)
            return await self._append(visitor, session, built, dedup)

    async def who(self, visitor: str) -> dict[str, Any] | None:
        raw = await self._get(f"i:{visitor}")
        return None if raw is None else dict(orjson.loads(raw))

    async def remember(self, visitor: str, who: dict[str, Any]) -> None:
        await self._set(f"i:{visitor}", orjson.dumps(who).decode())

    async def keep_file(self, visitor: str, sha256: str, attachment: dict[str, Any]) -> None:
        await self._set(f"f:{visitor}:{sha256}", orjson.dumps(attachment).decode())

    async def file(self, visitor: str, sha256: str) -> dict[str, Any] | None:
        """A file this visitor uploaded (None for another session's, or none)."""
        raw = await self._get(f"f:{visitor}:{sha256}")
        return None if raw is None else dict(orjson.loads(raw))

    async def prune(self, ttl: timedelta, now: datetime) -> int:
        """Forget sessions (and old messages) not written for `ttl`."""
        before = now - ttl
        total = 0
        for prefix in PREFIXES:
            total += await self._store.prune_checkpoints(self._channel, prefix, before)
        return total
