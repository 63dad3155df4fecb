"""`/status` and `/status.json` on the daemon's HTTP listener, behind the supervisor's
credential.

- No `supervisor.password_hash` in the config: 404, saying how to turn the page on
  (the listener often faces a network; the page is off until someone chooses it).
- No credential or a wrong one: 401 with `WWW-Authenticate: Basic` (a browser asks
  for the user name and password; `Authorization: Bearer <password>` works too).
  The password is checked against the scrypt hash (constant-time compare); a
  credential that passed is remembered by a keyed digest for a while, so a page
  refreshing every few seconds costs one scrypt check, not one per refresh.
- Too many wrong credentials from one address (`FAILURES_PER_MINUTE`): 429 with
  Retry-After until the minute passes, without a scrypt check.
- The store unavailable: 503 with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from router.config.supervisor import SupervisorConfig
from router.errors import OmniError
from router.status.page import CSP, render
from router.status.password import parse
from router.status.snapshot import Status, as_json

log = structlog.get_logger(__name__)

PATHS = ("/status", "/status.json")
REALM = 'Basic realm="omnirouter supervisor", charset="UTF-8"'
OFF = (
    "the supervisor page is off: set supervisor.password_hash in the config"
    " (python -m router.status.password makes one; see docs/status.md)"
)
REMEMBER_SECONDS = 300.0  # a credential that passed is trusted this long without scrypt
REMEMBERED = 32  # credentials remembered at most (a few supervisors, a few browsers)
CHECKS_AT_ONCE = 2  # scrypt checks running at once; more callers wait (bounds CPU)
MAX_HEADER = 1024
# Wrong credentials from one address: after this many in a minute it is answered 429
# until the minute passes, without a scrypt check (guessing is slow and costs us nothing).
FAILURES_PER_MINUTE = 20
FAILURE_WINDOW = 60.0
FAILING_PEERS = 1024  # addresses remembered at most

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Gate:
    """Whether an `Authorization` header carries the supervisor's credential."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)  # digests of passed credentials, this process only
        self._passed: OrderedDict[bytes, float] = OrderedDict()
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def blocked(self, peer: str | None) -> float | None:
        """Seconds until `peer` may try again after too many wrong credentials (None: now)."""
        times = self._recent(peer)
        if len(times) < FAILURES_PER_MINUTE:
            return None
        return max(1.0, times[0] + FAILURE_WINDOW - time.monotonic())

    def failed(self, peer: str | None) -> None:
        key = peer or "?"
        self._failures[key] = [*self._recent(peer), time.monotonic()][-FAILURES_PER_MINUTE:]
        self._failures.move_to_end(key)
        while len(self._failures) > FAILING_PEERS:
            self._failures.popitem(last=False)

    def _recent(self, peer: str | None) -> list[float]:
        now = time.monotonic()
        return [t for t in self._failures.get(peer or "?", ()) if now - t < FAILURE_WINDOW]

    async def allows(self, header: str | None, config: SupervisorConfig) -> bool:
        assert config.password_hash is not None
        secret = _credential(header, config.username)
        if secret is None:
            return False
        stored = config.password_hash.get_secret_value()
        # Keyed by the stored hash too: a new hash (a reload) forgets what passed before.
        digest = hmac.digest(self._key, f"{stored}\x00{secret}".encode(), "sha256")
        now = time.monotonic()
        seen = self._passed.get(digest)
        if seen is not None and now - seen < REMEMBER_SECONDS:
            return True
        async with self._checks:
            ok = await asyncio.to_thread(parse(stored).matches, secret)
        if ok:
            self._passed[digest] = now
            self._passed.move_to_end(digest)
            while len(self._passed) > REMEMBERED:
                self._passed.popitem(last=False)
        return ok


def _credential(header: str | None, username: str) -> str | None:
    """The password in a Basic (with the right user name) or Bearer header; None otherwise."""
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    # The user name is compared in constant time too (it is half of the credential).
    same_user = hmac.compare_digest(
        hashlib.sha256(user.encode()).digest(), hashlib.sha256(username.encode()).digest()
    )
    return password if sep and same_user and password else None


def add_status_routes(
    app: web.Application,
    supervisor: Callable[[], SupervisorConfig],
    take: Callable[[], Awaitable[Status]],
) -> None:
    """Add `/status` and `/status.json`; `supervisor()` is read on every request (a
    reload may change the credential), `take()` gives the snapshot."""
    gate = Gate()

    async def guarded(request: web.Request) -> tuple[SupervisorConfig, Status | web.Response]:
        config = supervisor()
        if config.password_hash is None or not config.password_hash.known:
            return config, web.Response(status=404, text=OFF + "\n", headers=HEADERS)
        given = request.headers.get("Authorization")
        wait = gate.blocked(request.remote)
        if wait is not None:
            return config, web.Response(
                status=429,
                text=f"too many wrong credentials from this address; try again in {wait:.0f} s\n",
                headers={**HEADERS, "Retry-After": str(int(wait) + 1)},
            )
        if not await gate.allows(given, config):
            if given:  # (a browser's first request carries none: nothing to say)
                gate.failed(request.remote)
                log.warning("status: credential refused", peer=request.remote, path=request.path)
            return config, web.Response(
                status=401,
                text="the supervisor's user name and password (or Bearer token) are needed\n",
                headers={**HEADERS, "WWW-Authenticate": REALM},
            )
        try:
            return config, await take()
        except OmniError as exc:
            log.warning("status: snapshot failed", error=str(exc))
            return config, web.Response(
                status=503, text=f"the store cannot be read: {exc}\n", headers=HEADERS
            )

    async def page(request: web.Request) -> web.Response:
        config, got = await guarded(request)
        if isinstance(got, web.Response):
            return got
        html = render(got, refresh_seconds=config.refresh_seconds)
        headers = {**HEADERS, "Content-Security-Policy": CSP}
        return web.Response(text=html, content_type="text/html", headers=headers)

    async def data(request: web.Request) -> web.Response:
        _, got = await guarded(request)
        if isinstance(got, web.Response):
            return got
        return web.Response(
            body=orjson.dumps(as_json(got)), content_type="application/json", headers=HEADERS
        )

    app.router.add_get(PATHS[0], page)
    app.router.add_get(PATHS[1], data)
