"""Shared builders for the phone connector's tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from connectors.phone.config import PhoneChannelConfig
from connectors.phone.connector import PhoneConnector
from connectors.phone.inbound import Reader
from router.blobs import BlobStore
from router.config.secrets import SecretRef
from router.connector import Services
from router.connector.signing import hmac_hex
from router.connector.testing import MemoryCheckpoints
from router.http import Routes
from tests.harness.common import free_port

CHANNEL = "main-line"
SECRET = "phone-signing-key-0123456789"
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def phone_config(**overrides: Any) -> PhoneChannelConfig:
    settings: dict[str, Any] = {
        "hmac_secret": SecretRef(SECRET),
        "default_region": "ES",
        "timezone": "Europe/Madrid",
        "agents": {"201": "ana", "202": "ben"},
    }
    settings.update(overrides)
    return PhoneChannelConfig.model_validate(settings)


def reader(**overrides: Any) -> Reader:
    return Reader.of(CHANNEL, phone_config(**overrides))


def cdr_line(
    *,
    src: str = "600112233",
    dst: str = "100",
    clid: str = '"Ana Perez" <600112233>',
    channel: str = "PJSIP/trunk-00000001",
    dstchannel: str = "PJSIP/201-00000002",
    lastapp: str = "Dial",
    start: str = "2026-03-10 10:00:00",
    answer: str = "2026-03-10 10:00:12",
    end: str = "2026-03-10 10:03:12",
    duration: str = "192",
    billsec: str = "180",
    disposition: str = "ANSWERED",
    uniqueid: str | None = "1741597200.1",
) -> str:
    """One Master.csv line as Asterisk writes it (quoted fields, trailing uniqueid optional)."""
    fields = [
        "",
        src,
        dst,
        "from-trunk",
        clid,
        channel,
        dstchannel,
        lastapp,
        "PJSIP/201,30",
        start,
        answer,
        end,
        duration,
        billsec,
        disposition,
        "DOCUMENTATION",
    ]
    if uniqueid is not None:
        fields += [uniqueid, "", "", uniqueid, "1"]
    return ",".join('"' + f.replace('"', '""') + '"' for f in fields)


def write_lines(path: Path, lines: list[str], *, mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8", newline="") as f:
        f.writelines(line + "\n" for line in lines)


@dataclass
class Listening:
    """A phone connector whose routes are served on 127.0.0.1."""

    connector: PhoneConnector
    port: int
    checkpoints: MemoryCheckpoints

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def listening(
    tmp: Path, cfg: PhoneChannelConfig | None = None, **kw: Any
) -> AsyncIterator[Listening]:
    """The connector built as the daemon builds it (its routes on a real listener), started."""
    app = web.Application()
    checkpoints = MemoryCheckpoints()
    services = Services(blobs=BlobStore(tmp / "blobs"), checkpoints=checkpoints, http=Routes(app))
    connector = PhoneConnector(CHANNEL, cfg or phone_config(), services, **kw)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await connector.start()
    try:
        yield Listening(connector, port, checkpoints)
    finally:
        await connector.stop()
        await runner.cleanup()


def signed(body: bytes, *, key: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-Omni-Timestamp": str(timestamp),
        "X-Omni-Signature": hmac_hex(key.encode(), timestamp, body),
    }


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)
