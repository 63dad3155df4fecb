"""The Telegram connector's I/O helpers: the bot's HTTP transport, the update offset and
the outbound pacing.

- `AiohttpRequest`: python-telegram-bot's transport over aiohttp. The token is part
  of every Bot API URL; httpx (the library's default transport) logs each URL at
  INFO, and its errors may quote it. Ours logs nothing and names errors by type only.
- `Offsets`: which polled updates are out, done or to offer again, and the offset
  that confirms only finished ones (getUpdates confirms every update below it).
- `Pacer`: Telegram's limits: about one message a second per chat, 20 a minute per
  group, about 30 a second in all; and a chat held for `retry_after` after a 429.
  A slot is counted from when the previous send *ended*, so the spacing Telegram
  sees is never under the limit however long a request takes on the way.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from router.connector import Outcome

# python-telegram-bot's documented opt-in to v23's durations (`RetryAfter.retry_after` a
# timedelta): without it, every 429 raises a deprecation warning inside the library.
# Only the library reads it, and `seconds()` takes either form.
os.environ.setdefault("PTB_TIMEDELTA", "true")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 10.0


class AiohttpRequest(BaseRequest):
    """A `telegram.request.BaseRequest` on one aiohttp session (files are never uploaded)."""

    def __init__(self, read_timeout: float = READ_TIMEOUT) -> None:
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "omnirouter"})

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise NetworkError("the transport is not initialized")
        read = read_timeout if isinstance(read_timeout, int | float) else self._read_timeout
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=read)
        data: Any = request_data.json_parameters if request_data is not None else None
        if request_data is not None and request_data.contains_files:
            data = aiohttp.FormData(request_data.json_parameters)  # a file goes as multipart
            for part, (filename, content, mime) in request_data.multipart_data.items():
                data.add_field(part, content, filename=filename, content_type=mime)
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as resp:
                return resp.status, await resp.read()
        except TimeoutError:
            raise TimedOut("no answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            # The type only: a message may quote the URL, and the URL holds the token.
            raise NetworkError(f"aiohttp {type(exc).__name__}") from None


def seconds(value: int | float | timedelta) -> float:
    """`RetryAfter.retry_after` in seconds, whichever type the library gives."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def retry_after_of(exc: Any) -> float:
    return seconds(exc.retry_after)


class Offsets:
    """Polled updates by id: out (handed over), done, or to offer again."""

    def __init__(self, start: int) -> None:
        self.start = start  # every update below it is finished (the offset to confirm)
        self._states: dict[int, str] = {}
        self._out = 0  # handed over, not acked yet
        self._settled = asyncio.Event()
        self._settled.set()

    def take(self, update_id: int) -> bool:
        """Whether to hand this update over now (new, or given back by a retriable ack)."""
        if update_id < self.start or self._states.get(update_id, "again") != "again":
            return False
        self._states[update_id] = "out"
        self._out += 1
        self._settled.clear()
        return True

    def finish(self, update_id: int, outcome: Outcome) -> None:
        # Done or dead-lettered: forget it; a retriable error: offer it again.
        retry = not outcome.done and outcome.retriable
        if self._states.get(update_id) == "out":
            self._states[update_id] = "again" if retry else "done"
            self._out -= 1
            if not self._out:
                self._settled.set()

    async def settled(self) -> None:
        """Until every update handed over is acked. The runner has several in flight; the
        next getUpdates, sent before, would get the unconfirmed ones back at once, again
        and again."""
        await self._settled.wait()

    def offset(self) -> int:
        """The lowest update not finished (or one past all): confirms only finished ones."""
        for update_id in sorted(self._states):
            if self._states[update_id] != "done":
                break
            del self._states[update_id]
            self.start = max(self.start, update_id + 1)
        return self.start


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

PER_CHAT = 1.0  # seconds between messages to one chat
PER_GROUP = (20, 60.0)  # messages per window (seconds) to one group
OVERALL = (30, 1.0)  # messages per window (seconds) in all
MAX_CHATS = 10_000  # chats remembered before the idle ones are forgotten


class Pacer:
    """Waits for a send's slot (`slot`), books its end (`sent`), holds a chat after a 429."""

    def __init__(
        self,
        *,
        per_chat: float = PER_CHAT,
        per_group: tuple[int, float] = PER_GROUP,
        overall: tuple[int, float] = OVERALL,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.per_chat = per_chat
        self.per_group = per_group
        self.overall = overall
        self._clock = clock
        self._sleep = sleep
        self._next: dict[int, float] = {}  # chat -> earliest next send
        self._groups: dict[int, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=overall[0])

    def _ready_at(self, chat_id: int) -> float:
        at = self._next.get(chat_id, 0.0)
        if len(self._all) == self._all.maxlen:
            at = max(at, self._all[0] + self.overall[1])
        group = self._groups.get(chat_id)
        if chat_id < 0 and group is not None and len(group) == group.maxlen:
            at = max(at, group[0] + self.per_group[1])
        return at

    def wait_for(self, chat_id: int) -> float:
        return max(0.0, self._ready_at(chat_id) - self._clock())

    async def slot(self, chat_id: int) -> None:
        while (delay := self.wait_for(chat_id)) > 0:
            await self._sleep(delay)

    def sent(self, chat_id: int) -> None:
        """A send to `chat_id` just ended (delivered or refused: it counted either way)."""
        now = self._clock()
        if len(self._next) > MAX_CHATS:  # forget chats that may be written to at once anyway
            self._next = {c: at for c, at in self._next.items() if at > now}
            self._groups = {
                c: g for c, g in self._groups.items() if g[-1] > now - self.per_group[1]
            }
        self._next[chat_id] = max(self._next.get(chat_id, 0.0), now + self.per_chat)
        self._all.append(now)
        if chat_id < 0:
            self._groups.setdefault(chat_id, deque(maxlen=self.per_group[0])).append(now)

    def hold(self, chat_id: int, retry_after: float) -> None:
        """Telegram said 429: nothing more to this chat for `retry_after` seconds."""
        self._next[chat_id] = max(self._next.get(chat_id, 0.0), self._clock() + retry_after)
