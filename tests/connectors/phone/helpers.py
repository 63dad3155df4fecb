"""Shared builders for the phone connector's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.phone.config import PhoneChannelConfig
from connectors.phone.inbound import Reader
from router.config.secrets import SecretRef

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
