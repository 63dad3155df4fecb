"""Shared helpers for the email connector's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.email.config import EmailChannelConfig


class MemoryCheckpoints:
    """The checkpoint store's contract, in memory (the real store has its own tests)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    async def get_checkpoint(self, name: str, key: str) -> str | None:
        return self.values.get((name, key))

    async def set_checkpoint(self, name: str, key: str, value: str) -> None:
        self.values[(name, key)] = value


def email_config(
    *,
    imap_port: int = 143,
    smtp_port: int = 25,
    user: str = "u",
    password: str = "p",
    imap: dict[str, Any] | None = None,
    **extra: Any,
) -> EmailChannelConfig:
    return EmailChannelConfig.model_validate(
        {
            "imap": {
                "host": "127.0.0.1",
                "port": imap_port,
                "security": "none",
                "username": user,
                "password": password,
                "first_start": "all",
                "timeout": "10s",
                **(imap or {}),
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "from_address": "support@shop.example",
                "from_name": "Shop Support",
                "timeout": "5s",
            },
            **extra,
        }
    )


def mail(
    n: int | str, *, sender: str = "ana@example.net", subject: str | None = None, extra: str = ""
) -> bytes:
    return (
        f"From: Ana <{sender}>\r\nTo: support@shop.example\r\n"
        f"Subject: {subject or f'message {n}'}\r\nMessage-ID: <m{n}@example.net>\r\n"
        f"Date: Mon, 3 Mar 2025 10:00:00 +0000\r\n{extra}\r\nbody {n}\r\n"
    ).encode()


def daemon_config(
    tmp: Path, account: Any, smtp: Any, *, smtp_extra: str = "", rest: str = ""
) -> str:
    """A daemon config with one enabled email channel on the harness's Dovecot and SMTP."""
    return f"""
version: 1
bus:
  backend: embedded
  embedded: {{path: "{tmp}/bus.sqlite3"}}
store:
  url: "sqlite:///{tmp}/store.sqlite3"
blobs: {{path: "{tmp}/blobs"}}
http: {{host: 127.0.0.1, port: 0}}
channels:
  - name: support-email
    type: email
    email:
      imap:
        host: 127.0.0.1
        port: {account.port}
        security: none
        username: {account.username}
        password: ${{TEST_IMAP_PASSWORD}}
        first_start: all
      smtp:
        host: 127.0.0.1
        port: {smtp.port}
        security: none
        from_address: support@shop.example
{smtp_extra}{rest}"""
