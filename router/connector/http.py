"""An HTTP intake: a request becomes an envelope, answered only once it is on the bus.

For connectors that take input by HTTP (agents' webhooks, web chat, a
Telegram webhook, phone call events). `HttpIntake.handle` is the aiohttp
handler; `receive()` is the connector's intake. In order, a request is:

- 503 while the intake is stopped;
- 413 once its body passes `max_body_bytes` (read in chunks, never whole);
- 401 when the connector's `check` (signature, timestamp, replay) refuses it;
- 4xx with the reason when its `parse` refuses it (`HttpRefusal`);
- 503 when `queue_size` requests already wait for their ack;
- then handed to the channel runner, and answered by the ack's `Outcome`:
  done 2xx with the envelope id; a retriable error (the bus is unavailable)
  503; any other 422 with the reason (it was dead-lettered). No ack within
  `ack_timeout`, or a stop while waiting, is 503: the sender retries, and
  the same native id gives the same envelope id, so the router drops a repeat.

Refusals are logged without what the caller sent (`logged` says what may be),
at most `REFUSALS_BURST` a minute per status: a misconfigured or hostile
sender retrying in a loop must not flood the log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta

import structlog
from aiohttp import web

from router.connector import Incoming
from router.connector.handover import Handover
from router.connector.signing import BadSignature
from router.envelope import Envelope
from router.logs import RateLimiter

log = structlog.get_logger(__name__)

ACK_TIMEOUT = timedelta(seconds=10)  # how long a request waits for its envelope to be on the bus
QUEUE_SIZE = 256  # requests handed over and not yet answered
CHUNK = 64 * 1024
REFUSALS_BURST = 10  # refusals logged per status and minute; the rest are counted


class HttpRefusal(Exception):
    """Raised by a `check` or `parse` hook: answer `status` with `reason`.

    `logged` is what the log may say instead of `reason`, when the reason
    quotes what the caller sent.
    """

    def __init__(self, status: int, reason: str, *, logged: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.logged = logged


# Both raise HttpRefusal (or BadSignature, answered 401) to refuse the request.
Check = Callable[[web.Request, bytes], None]
Parse = Callable[[web.Request, bytes], Envelope]


def answer(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def require_json(request: web.Request) -> None:
    """Refuse (415) a body not declared `application/json` in UTF-8."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset != "utf-8":
        raise HttpRefusal(
            415,
            "Content-Type must be application/json (UTF-8); got"
            f" {request.headers.get('Content-Type') or 'none'}",
            logged="Content-Type is not application/json",
        )


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# How many X-Forwarded-For entries are read: a chain of proxies is short, and a
# client may send a header of any length.
MAX_FORWARDED_HOPS = 16


def client_ip(request: web.Request, trusted: Sequence[IpNetwork]) -> str | None:
    """The address of the client a request comes from: the peer, or, when the peer is one
    of the `trusted` proxies, the nearest X-Forwarded-For entry that is not a trusted proxy
    (entries further left were written by the client and prove nothing)."""
    peer = request.remote
    if not trusted or peer is None or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed([h for h in hops if h][-MAX_FORWARDED_HOPS:]):
        if not _trusted(hop, trusted):
            return hop if _parses(hop) else peer
    return peer  # every hop is a proxy of ours (or no header): the peer is as near as we get


def _parses(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: Sequence[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


async def read_body(request: web.Request, limit: int) -> bytes | None:
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


class HttpIntake:
    """One channel's HTTP intake. `log_as` names its inputs in the log ("agent event"),
    `noun` in the answers ("event")."""

    def __init__(
        self,
        channel: str,
        *,
        parse: Parse,
        max_body_bytes: int,
        check: Check | None = None,
        ack_timeout: timedelta = ACK_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        refusals: RateLimiter | None = None,
        accepted_status: int = 202,
        log_as: str = "request",
        noun: str = "request",
    ) -> None:
        self.channel = channel
        self._parse = parse
        self._check = check
        self._max_body = max_body_bytes
        self._handover = Handover(ack_timeout=ack_timeout.total_seconds(), in_flight=queue_size)
        self._refusals = refusals or RateLimiter(REFUSALS_BURST, 60.0)
        self._accepted = accepted_status
        self._log_as = log_as
        self._noun = noun
        self._accepting = False  # requests are taken in between start() and stop()

    def start(self) -> None:
        self._accepting = True

    def stop(self) -> None:
        """Stop taking requests; those waiting are answered 503 (the sender retries later)."""
        self._accepting = False
        self._handover.release()

    def queued(self) -> int:
        """Requests handed over but not yet taken by `receive()`."""
        return self._handover.queued()

    def receive(self) -> AsyncIterator[Incoming]:
        return self._handover.receive()

    async def handle(self, request: web.Request) -> web.Response:
        if not self._accepting:
            return answer(503, f"not taking {self._noun}s right now; try again")
        body = await read_body(request, self._max_body)
        if body is None:
            return self.refuse(413, f"body larger than {self._max_body} bytes")
        try:
            if self._check is not None:
                self._check(request, body)
            envelope = self._parse(request, body)
        except BadSignature as exc:
            return self.refuse(401, str(exc))  # our own fixed texts
        except HttpRefusal as exc:
            return self.refuse(exc.status, exc.reason, logged=exc.logged)
        outcome = await self._handover.hand_over(envelope)
        if outcome is None:
            return self.refuse(503, f"too many {self._noun}s in flight; try again")
        if not outcome.done:
            if outcome.retriable:
                return self.refuse(503, f"{outcome.error}; send the same {self._noun} again")
            return self.refuse(422, f"{self._noun} refused: {outcome.error}")
        fields = {"agent": envelope.sender.address} if envelope.sender.role == "agent" else {}
        log.info(
            f"{self._log_as} taken in",
            channel=self.channel,
            record_id=envelope.id,
            kind=envelope.kind,
            **fields,
        )
        return web.json_response({"id": envelope.id}, status=self._accepted)

    def refuse(self, status: int, reason: str, *, logged: str | None = None) -> web.Response:
        """Answer `reason`; log `logged` (nothing the caller sent) if it is not one too many
        of this status for now."""
        extra = self._refusals.admit(status)
        if extra is not None:
            log.warning(
                f"{self._log_as} refused",
                channel=self.channel,
                status=status,
                reason=reason if logged is None else logged,
                **extra,
            )
        return answer(status, reason)
