"""Deliveries POSTed to agents' tools, and what each HTTP outcome means.

2xx is sent; 408, 429, 5xx, connection errors and timeouts are retried later
(the same `X-Omnirouter-Id` every time, so the tool can drop a repeat after an
ambiguous timeout); any other status, a redirect or an unusable URL fails for
good (the router records an incident and tells the owner). Only the URL's
host is ever logged or put in a result: Slack and Teams URLs are secrets.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import structlog

from router.connector import SendResult

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 429})
MAX_DETAIL_CHARS = 120


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 1] + "…"


def open_session(timeout: timedelta) -> aiohttp.ClientSession:
    """A channel's session for its deliveries (its owner closes it)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout.total_seconds()),
        headers={"User-Agent": "omnirouter"},
    )


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    channel: str,
    record_id: str,
) -> SendResult:
    """POST one delivery's `body` to its agent's `url`; every outcome is a `SendResult`."""
    host = host_of(url)
    where = f"agent tool at {host}"
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            if 200 <= status < 300:
                log.info("delivery posted", channel=channel, host=host, record_id=record_id)
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
    log.warning("delivery refused", channel=channel, host=host, status=status, record_id=record_id)
    return SendResult(status="failed", detail=detail)
