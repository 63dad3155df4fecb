"""The phone connector: call records in from a CDR file, a signed JSON webhook and Twilio.

Each source is optional (docs/phone.md); `receive()` merges those configured.
The HTTP routes are the kit's `HttpIntake`: size (413), signature (401), shape
(400, 415), then 2xx only once the envelope is durably on the bus (503 while
stopped or while the bus does not take it: the sender sends again, and the
same call id gives the same envelope id, so the router drops a repeat).

The JSON webhook's signature is the kit's HMAC-SHA256 over `<timestamp>.<body>`
with a timestamp window; a request replayed within the window is refused
(401) by its signature, except after a 503, when the very same bytes may come
again. Twilio signs the full URL followed by the POST parameters sorted by name
(HMAC-SHA1, base64) with the account's auth token, and has no timestamp: a
replay of a callback gives the same envelope id, which the router drops.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from connectors.phone.client import CdrTail, Line, merge
from connectors.phone.config import PhoneChannelConfig
from connectors.phone.errors import BadCall
from connectors.phone.inbound import EVENT_FIELDS, Reader
from router.connector import Incoming, Outcome, Rejected, SendResult, Services, signing
from router.connector.http import (
    ACK_TIMEOUT,
    QUEUE_SIZE,
    Check,
    HttpIntake,
    HttpRefusal,
    Parse,
    require_json,
)
from router.connector.signing import BadSignature, Replays
from router.envelope import Envelope, now_utc
from router.logs import RateLimiter

log = structlog.get_logger(__name__)

TWILIO_SIGNATURE = "X-Twilio-Signature"
# The JSON event's signature (forgotten after a 503), Twilio's parsed parameters.
_SIGNED = web.RequestKey("phone.signature", str)
_FORM: web.RequestKey[dict[str, str]] = web.RequestKey("phone.form", dict)


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's `X-Twilio-Signature`: base64 HMAC-SHA1 over the URL, then each
    parameter's name and value, sorted by name."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class PhoneConnector:
    """One phone channel: its configured sources merged into one intake; it sends nothing."""

    def __init__(
        self,
        name: str,
        cfg: PhoneChannelConfig,
        services: Services,
        *,
        ack_timeout: timedelta = ACK_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        refusals: RateLimiter | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.reader = Reader.of(name, cfg)
        self.tail = (
            None
            if cfg.cdr is None
            else CdrTail(
                cfg.cdr.path,
                channel=name,
                checkpoints=services.checkpoints,
                poll=cfg.cdr.poll_interval.total_seconds(),
            )
        )
        skew = cfg.max_clock_skew.total_seconds()
        self.replays = Replays(window=skew)
        self._intake_args = (ack_timeout, queue_size, refusals)
        self.events: HttpIntake | None = None
        self.callbacks: HttpIntake | None = None
        if cfg.webhook_path is not None:
            self.events = self._intake(self._verify_event, self._parse_event, 202)
        if cfg.twilio is not None:
            self.callbacks = self._intake(self._verify_twilio, self._parse_twilio, 200)
        if services.http is None:
            if self.events or self.callbacks:
                log.warning("no HTTP listener: call events cannot reach this channel", channel=name)
        else:
            if self.events is not None and cfg.webhook_path is not None:
                services.http.add("POST", cfg.webhook_path, self._take_event)
            if self.callbacks is not None and cfg.twilio is not None:
                services.http.add("POST", cfg.twilio.path, self.callbacks.handle)

    def _intake(self, check: Check, parse: Parse, accepted: int) -> HttpIntake:
        ack_timeout, queue_size, refusals = self._intake_args
        return HttpIntake(
            self.name,
            check=check,
            parse=parse,
            max_body_bytes=self.cfg.max_body_bytes,
            ack_timeout=ack_timeout,
            queue_size=queue_size,
            refusals=refusals,
            accepted_status=accepted,
            log_as="call record",
            noun="call record",
        )

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        for intake in (self.events, self.callbacks):
            if intake is not None:
                intake.start()

    async def stop(self) -> None:
        for intake in (self.events, self.callbacks):
            if intake is not None:
                intake.stop()

    async def send(self, envelope: Envelope) -> SendResult:
        return SendResult(status="failed", detail="a phone channel sends nothing")

    # --- intake ---------------------------------------------------------------------------

    def receive(self) -> AsyncIterator[Incoming | Rejected]:
        sources: list[AsyncIterator[Incoming | Rejected]] = []
        if self.tail is not None:
            sources.append(self._cdr_items(self.tail))
        for intake in (self.events, self.callbacks):
            if intake is not None:
                sources.append(intake.receive())
        return merge(*sources)

    async def _cdr_items(self, tail: CdrTail) -> AsyncIterator[Incoming | Rejected]:
        async for line in tail.lines():
            yield self._item(tail, line)

    def _item(self, tail: CdrTail, line: Line) -> Incoming | Rejected:
        async def ack(outcome: Outcome) -> None:
            await tail.ack(line, outcome)

        where = f"{tail.path.name}@{line.start}"
        if line.oversized:
            return Rejected(
                reason=f"CDR line longer than {MAX_LINE_TEXT}", ack=ack, native_id=where
            )
        try:
            envelope = self.reader.cdr(self.reader.split(line.text), now_utc())
        except BadCall as exc:
            return Rejected(reason=f"CDR line: {exc}", ack=ack, native_id=where)
        return Incoming(envelope=envelope, ack=ack)

    # --- the JSON call-event webhook ------------------------------------------------------

    async def _take_event(self, request: web.Request) -> web.StreamResponse:
        assert self.events is not None
        response = await self.events.handle(request)
        signed = request.get(_SIGNED)
        if response.status == 503 and signed is not None:
            self.replays.forget(signed)  # not taken: the sender may send the same bytes again
        return response

    def _verify_event(self, request: web.Request, body: bytes) -> None:
        cfg = self.cfg
        assert cfg.hmac_secret is not None  # required with webhook_path
        stamp = request.headers.get(cfg.timestamp_header)
        given = request.headers.get(cfg.signature_header)
        if not stamp:
            raise BadSignature(f"missing {cfg.timestamp_header}")
        if not given:
            raise BadSignature(f"missing {cfg.signature_header}")
        now = time.time()
        when = signing.check_timestamp(
            stamp,
            now=now,
            max_skew=cfg.max_clock_skew.total_seconds(),
            name=cfg.timestamp_header,
        )
        expected = signing.hmac_hex(cfg.hmac_secret.get_secret_value().encode(), when, body)
        signing.check(expected, given)
        self.replays.check(expected, now=now)
        request[_SIGNED] = expected

    def _parse_event(self, request: web.Request, body: bytes) -> Envelope:
        require_json(request)
        try:
            return self.reader.event(body, now_utc())
        except BadCall as exc:
            raise HttpRefusal(400, str(exc), logged=_field_of(exc)) from None

    # --- Twilio ---------------------------------------------------------------------------

    def _verify_twilio(self, request: web.Request, body: bytes) -> None:
        twilio = self.cfg.twilio
        assert twilio is not None and twilio.auth_token is not None  # required
        if request.content_type != "application/x-www-form-urlencoded":
            raise HttpRefusal(415, "Content-Type must be application/x-www-form-urlencoded")
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise HttpRefusal(400, "body: not form-encoded UTF-8") from None
        given = request.headers.get(TWILIO_SIGNATURE)
        if not given:
            raise BadSignature(f"missing {TWILIO_SIGNATURE}")
        url = str(request.url)
        if twilio.public_url is not None:
            url = twilio.public_url + (f"?{request.query_string}" if request.query_string else "")
        expected = twilio_signature(twilio.auth_token.get_secret_value(), url, params)
        signing.check(expected, given)
        request[_FORM] = dict(params)

    def _parse_twilio(self, request: web.Request, body: bytes) -> Envelope:
        params: dict[str, str] = request[_FORM]
        try:
            return self.reader.twilio(params, now_utc())
        except BadCall as exc:
            raise HttpRefusal(400, str(exc), logged=_field_of(exc)) from None


MAX_LINE_TEXT = "64 KiB"


def _field_of(exc: BadCall) -> str:
    """What a refusal may log: the field it names, if it is one of ours (never a value)."""
    field = str(exc).partition(":")[0]
    return f"bad field {field}" if field in _LOGGABLE else "unknown field"


_LOGGABLE = EVENT_FIELDS | {"body", "CallSid", "CallStatus", "From", "To", "call id"}
_LOGGABLE |= {"RecordingDuration", "CallDuration"}


def build(name: str, settings: PhoneChannelConfig, services: Services) -> PhoneConnector:
    """The `ConnectorSpec.factory` for `type: phone`."""
    return PhoneConnector(name, settings, services)
