"""Deliveries to agents as signed JSON POSTs, and what each HTTP outcome means.

2xx is sent; 408, 429, 5xx, connection errors and timeouts are retried later
(the same `X-Omnirouter-Id` every time, so the tool can drop a repeat after an
ambiguous timeout); any other status, a redirect or an unusable URL fails for
good (the router records an incident and tells the owner). Only the URL's
host is ever logged or put in a result: Slack and Teams URLs are secrets.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from connectors.webhook.outbound import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from router.connector import SendResult
from router.envelope import Delivery, Envelope

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 429})
MAX_DETAIL_CHARS = 120


def body_of(envelope: Envelope, delivery: Delivery) -> bytes:
    """The JSON body POSTed for one delivery (the same bytes on every retry)."""
    return orjson.dumps(
        {
            "v": 1,
            "id": envelope.id,
            "event": delivery.event,
            "agent": delivery.agent.model_dump(mode="json"),
            "conversation_id": envelope.conversation_id,
            "subject": envelope.subject,
            "text": envelope.text,
            "token": delivery.token,
            "reason": delivery.reason,
            "note": delivery.note,
            "sla_due": delivery.sla_due.isoformat() if delivery.sla_due else None,
            "context": delivery.context or None,
            # When the router made the delivery: stable across retries.
            "sent_at": (envelope.sent_at or envelope.received_at).isoformat(),
        }
    )


def headers_for(key: bytes, envelope_id: str, body: bytes, now: float) -> dict[str, str]:
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        ID_HEADER: envelope_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 1] + "…"


async def post(
    session: aiohttp.ClientSession,
    key: bytes,
    envelope: Envelope,
    delivery: Delivery,
    url: str | None,
    *,
    channel: str,
) -> SendResult:
    """POST one delivery to its agent's URL; every outcome is a `SendResult`."""
    if not url:
        return SendResult(status="failed", detail="no webhook url for the delivery's agent")
    host = host_of(url)
    where = f"agent tool at {host}"
    body = body_of(envelope, delivery)
    headers = headers_for(key, envelope.id, body, time.time())
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            if 200 <= status < 300:
                log.info("delivery posted", channel=channel, host=host, record_id=envelope.id)
                return SendResult(status="sent", detail=f"{where}: HTTP {status}")
            # Not the body: a receiver's error page may echo the secret path back.
            answer = _short(resp.reason or "")
    except (aiohttp.InvalidURL, ValueError):
        # Not the exception's text: it quotes the URL.
        return SendResult(status="failed", detail=f"{where}: the sink url is not usable")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # Messages of these name host and port at most, but keep only the type anyway.
        kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("delivery not posted; will retry", channel=channel, host=host, error=kind)
        return SendResult(status="retry", detail=f"{where}: {kind}")
    detail = f"{where}: HTTP {status}" + (f" {answer}" if answer else "")
    if status in RETRY_STATUSES or status >= 500:
        log.warning(
            "delivery refused for now; will retry", channel=channel, host=host, status=status
        )
        return SendResult(status="retry", detail=detail)
    log.warning(
        "delivery refused", channel=channel, host=host, status=status, record_id=envelope.id
    )
    return SendResult(status="failed", detail=detail)
