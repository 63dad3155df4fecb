"""The webhook connector: deliveries POSTed out, the tool's events taken in over HTTP.

`send()` POSTs each delivery (`Envelope.delivery`, from `omni.agent.<channel>`)
to its agent's URL (`deliveries`). The events route (`POST <path>` on the
daemon's listener) checks size (413), signature and timestamp (401), that the
body is declared JSON (415) and its shape (400), then hands the envelope to
`receive()` and answers 202 only once the daemon has acked it, that is once
it is durably on the bus; if that takes longer than `ack_timeout`, or while
the connector is stopped, it answers 503 and the tool retries (the same event
id gives the same envelope id, so the router drops the repeat).

Refusals are logged without what the caller sent (a field name at most), and at
most `REFUSALS_BURST` a minute per status: a misconfigured or hostile tool
retrying in a loop must not flood the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from connectors.webhook import deliveries, events
from connectors.webhook.config import WebhookChannelConfig
from connectors.webhook.errors import BadEvent, BadSignature
from connectors.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from router.connector import DONE, Incoming, Outcome, SendResult, Services
from router.envelope import Delivery, Envelope, now_utc
from router.logs import RateLimiter

log = structlog.get_logger(__name__)

ACK_TIMEOUT = timedelta(seconds=10)  # how long a POST waits for its envelope to be on the bus
QUEUE_SIZE = 256  # events taken in but not yet handed to the daemon
CHUNK = 64 * 1024
REFUSALS_BURST = 10  # refusals logged per status and minute; the rest are counted


def _answer(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


_NOT_YET = Outcome("not stored yet", retriable=True)
_STOPPING = _NOT_YET  # answered 503: the tool sends it again after the restart


class WebhookConnector:
    """One webhook channel: agents' tools reached by signed POSTs, and their events back."""

    def __init__(
        self,
        name: str,
        cfg: WebhookChannelConfig,
        services: Services,
        *,
        ack_timeout: timedelta = ACK_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        refusals: RateLimiter | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.path = cfg.events_path(name)
        self._key = cfg.key()
        self._sinks = services.sinks  # agent id -> sink; the daemon keeps it current
        self._ack_timeout = ack_timeout.total_seconds()
        self._queue: asyncio.Queue[tuple[Incoming, asyncio.Future[Outcome]]] = asyncio.Queue(
            queue_size
        )
        self._waiting: set[asyncio.Future[Outcome]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._accepting = False  # events are taken in between start() and stop()
        self._stopped = False  # after stop(), sending waits for the next start()
        self._refusals = refusals or RateLimiter(REFUSALS_BURST, 60.0)
        if services.http is None:
            log.warning("no HTTP listener: agents' events cannot reach this channel", channel=name)
        else:
            services.http.add("POST", self.path, self.handle)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopped = False
        self._accepting = True

    async def stop(self) -> None:
        self._accepting = False
        self._stopped = True
        # Requests still waiting are answered 503; the tool sends them again later.
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_result(_STOPPING)
        for future in list(self._waiting):
            if not future.done():
                future.set_result(_STOPPING)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- sending --------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout.total_seconds()),
                headers={"User-Agent": "omnirouter"},
            )
        return self._session

    async def send(self, envelope: Envelope) -> SendResult:
        delivery = envelope.delivery
        if delivery is None:
            return SendResult(
                status="failed",
                detail="a webhook channel only carries deliveries to agents"
                " (the envelope has no delivery)",
            )
        if self._stopped:
            return SendResult(status="retry", detail="the connector is stopped")
        return await deliveries.post(
            self._client(), self._key, envelope, delivery, self._url_of(delivery), channel=self.name
        )

    def _url_of(self, delivery: Delivery) -> str | None:
        """The agent's URL from the config (never from the bus: it is a credential)."""
        agent_id = delivery.agent.id
        if not self._reaches(agent_id):
            return None
        return self._sinks[agent_id].url

    def _reaches(self, agent_id: str) -> bool:
        sink = self._sinks.get(agent_id)
        return sink is not None and sink.type == "webhook" and sink.channel == self.name

    # --- intake ---------------------------------------------------------------------------

    async def receive(self) -> AsyncIterator[Incoming]:
        while True:
            incoming, _ = await self._queue.get()
            yield incoming

    async def handle(self, request: web.Request) -> web.Response:
        """`POST <path>`: one event from an agent's tool."""
        if not self._accepting:
            return _answer(503, "not taking events right now; try again")
        body = await _read(request, self.cfg.max_body_bytes)
        if body is None:
            return self._refuse(413, f"body larger than {self.cfg.max_body_bytes} bytes")
        try:
            verify(
                self._key,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                now=time.time(),
                max_skew=self.cfg.max_clock_skew.total_seconds(),
            )
        except BadSignature as exc:
            return self._refuse(401, str(exc))  # our own fixed texts
        charset = (request.charset or "utf-8").lower()
        if request.content_type != "application/json" or charset != "utf-8":
            return self._refuse(
                415,
                "Content-Type must be application/json (UTF-8); got"
                f" {request.headers.get('Content-Type') or 'none'}",
                logged="Content-Type is not application/json",
            )
        try:
            envelope = events.to_envelope(body, self.name, now_utc())
        except BadEvent as exc:
            return self._refuse(400, str(exc), logged=_field_of(exc))
        agent = envelope.sender.address
        if not self._reaches(agent):
            # The key is the channel's: it vouches for the tool, which may speak only for
            # the agents this channel reaches.
            return self._refuse(
                403,
                f"agent {agent!r} is not reached through this channel",
                logged="agent not reached through this channel",
            )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        async def ack(outcome: Outcome = DONE) -> None:
            if not future.done():
                future.set_result(outcome)

        try:
            self._queue.put_nowait((Incoming(envelope=envelope, ack=ack), future))
        except asyncio.QueueFull:
            return self._refuse(503, "too many events in flight; try again")
        self._waiting.add(future)
        try:
            outcome = await asyncio.wait_for(future, self._ack_timeout)
        except TimeoutError:
            outcome = _NOT_YET
        finally:
            self._waiting.discard(future)
        if not outcome.done:
            if outcome.retriable:
                return self._refuse(503, f"{outcome.error}; send the same event again")
            return self._refuse(422, f"event refused: {outcome.error}")
        log.info(
            "agent event taken in",
            channel=self.name,
            record_id=envelope.id,
            kind=envelope.kind,
            agent=envelope.sender.address,
        )
        return web.json_response({"id": envelope.id}, status=202)

    def _refuse(self, status: int, reason: str, *, logged: str | None = None) -> web.Response:
        """Answer `reason` to the caller; log `logged` (nothing the caller sent) if it is
        not one too many of this status for now."""
        extra = self._refusals.admit(status)
        if extra is not None:
            log.warning(
                "agent event refused",
                channel=self.name,
                status=status,
                reason=reason if logged is None else logged,
                **extra,
            )
        return _answer(status, reason)


def _field_of(exc: BadEvent) -> str:
    """What a shape refusal may log: the field it names, if it is one of ours."""
    field = str(exc).partition(":")[0]
    return f"bad field {field}" if field in events.FIELDS | {"body"} else "unknown field"


async def _read(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit`."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build(name: str, settings: WebhookChannelConfig, services: Services) -> WebhookConnector:
    """The `ConnectorSpec.factory` for `type: webhook`."""
    return WebhookConnector(name, settings, services)
