"""The webhook connector: deliveries POSTed out, the tool's events taken in over HTTP.

`send()` POSTs each delivery (`Envelope.delivery`, from `omni.agent.<channel>`)
to its agent's URL: the body and signed headers from `outbound`, the POST and
what its outcome means in `client`. The events route (`POST <path>` on the
daemon's listener) is the kit's `HttpIntake` (router.connector.http): size
(413), then signature and timestamp (401), then here that the body is
declared JSON (415), its shape (400, `inbound` makes the envelope) and that
the channel reaches the agent (403); 202 only once the envelope is durably
on the bus, 503 while stopped, when the bus does not take it within
`ack_timeout` or too many wait (the tool retries: the same event id gives
the same envelope id, so the router drops the repeat).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from connectors.webhook import client, inbound, outbound
from connectors.webhook.config import WebhookChannelConfig
from connectors.webhook.errors import BadEvent
from connectors.webhook.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER
from router.config.people import SinkConfig
from router.connector import Incoming, SendResult, Services, sink_through
from router.connector.http import ACK_TIMEOUT, QUEUE_SIZE, HttpIntake, HttpRefusal, require_json
from router.envelope import Delivery, Envelope, now_utc
from router.logs import RateLimiter

log = structlog.get_logger(__name__)


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
        self.intake = HttpIntake(
            name,
            check=self._verify,
            parse=self._parse,
            max_body_bytes=cfg.max_body_bytes,
            ack_timeout=ack_timeout,
            queue_size=queue_size,
            refusals=refusals,
            log_as="agent event",
            noun="event",
        )
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False  # after stop(), sending waits for the next start()
        if services.http is None:
            log.warning("no HTTP listener: agents' events cannot reach this channel", channel=name)
        else:
            services.http.add("POST", self.path, self.intake.handle)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopped = False
        self.intake.start()

    async def stop(self) -> None:
        self._stopped = True
        self.intake.stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- sending --------------------------------------------------------------------------

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = client.open_session(self.cfg.timeout)
        return self._session

    async def send(self, envelope: Envelope) -> SendResult:
        delivery = envelope.delivery
        if envelope.direction != "out":
            return SendResult(status="failed", detail="not an outbound envelope (direction in)")
        if delivery is None:
            return SendResult(
                status="failed",
                detail="a webhook channel only carries deliveries to agents"
                " (the envelope has no delivery)",
            )
        if self._stopped:
            return SendResult(status="retry", detail="the connector is stopped")
        url = self._url_of(delivery)
        if not url:
            return SendResult(status="failed", detail="no webhook url for the delivery's agent")
        body = outbound.body_of(envelope, delivery)
        headers = outbound.headers_for(self._key, envelope.id, body, time.time())
        return await client.post(
            self._open_session(), url, body, headers, channel=self.name, record_id=envelope.id
        )

    def _url_of(self, delivery: Delivery) -> str | None:
        """The agent's URL from the config (never from the bus: it is a credential)."""
        sink = self._sink_of(delivery.agent.id)
        return sink.url if sink is not None else None

    def _sink_of(self, agent_id: str) -> SinkConfig | None:
        return sink_through(self._sinks, agent_id, "webhook", self.name)

    # --- intake ---------------------------------------------------------------------------

    def receive(self) -> AsyncIterator[Incoming]:
        return self.intake.receive()

    def _verify(self, request: web.Request, body: bytes) -> None:
        inbound.verify(
            self._key,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=time.time(),
            max_skew=self.cfg.max_clock_skew.total_seconds(),
        )

    def _parse(self, request: web.Request, body: bytes) -> Envelope:
        require_json(request)
        try:
            envelope = inbound.to_envelope(body, self.name, now_utc())
        except BadEvent as exc:
            raise HttpRefusal(400, str(exc), logged=_field_of(exc)) from None
        agent = envelope.sender.address
        if self._sink_of(agent) is None:
            # The key is the channel's: it vouches for the tool, which may speak only for
            # the agents this channel reaches.
            raise HttpRefusal(
                403,
                f"agent {agent!r} is not reached through this channel",
                logged="agent not reached through this channel",
            )
        return envelope


def _field_of(exc: BadEvent) -> str:
    """What a shape refusal may log: the field it names, if it is one of ours."""
    field = str(exc).partition(":")[0]
    return f"bad field {field}" if field in inbound.FIELDS | {"body"} else "unknown field"


def build(name: str, settings: WebhookChannelConfig, services: Services) -> WebhookConnector:
    """The `ConnectorSpec.factory` for `type: webhook`."""
    return WebhookConnector(name, settings, services)
