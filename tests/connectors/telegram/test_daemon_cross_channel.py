"""The same customer on Telegram, then by email: the same agent, with the Telegram
conversation in the email's context (real daemon, fake Bot API, Dovecot, aiosmtpd).

The customer follows a signed "continue on Telegram" link (`/start <payload>`), which
links their email address to their Telegram identity; their later email is theirs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from connectors.telegram.identity import deep_link_key, start_payload
from router.config import parse_config
from router.connector import load_registry
from router.envelope import StatedIdentity
from tests.connectors.email.helpers import daemon_config, mail
from tests.harness.common import eventually
from tests.harness.daemon import running
from tests.harness.dovecot import ImapAccount
from tests.harness.smtp import CapturingSmtp
from tests.harness.telegram import fake_bot_api, message

pytestmark = pytest.mark.imap

WAIT = 30.0
CUSTOMER, AGENT_USER = 42, 777
EMAIL = "ana@example.net"


def config_text(tmp: Path, port: int, account: ImapAccount, smtp: CapturingSmtp) -> str:
    telegram = f"""  - name: tg
    type: telegram
    telegram:
      bot_token: "${{BOT_TOKEN}}"
      api_url: "http://127.0.0.1:{port}"
      polling: {{timeout: 1s}}
agents:
  - id: chloe
    name: Chloé Martin
    sink: {{type: telegram, channel: tg, address: "{AGENT_USER}"}}
routing:
  assignment_timeout: 1h
"""
    return daemon_config(tmp, account, smtp, rest=telegram)


async def test_a_customer_linked_on_telegram_reaches_the_same_agent_by_email(
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_account.password)
    async with fake_bot_api() as api:
        registry = load_registry()
        cfg = parse_config(
            config_text(tmp_path, api.port, imap_account, smtp_server),
            env={"BOT_TOKEN": api.token, "TEST_IMAP_PASSWORD": imap_account.password},
            registry=registry,
        )
        link = start_payload(
            deep_link_key(api.token), StatedIdentity(kind="email", value=EMAIL), time.time()
        )
        async with running(cfg, registry=registry, watch_config=None, ready_within=WAIT):
            api.add_update(message(api, CUSTOMER, f"/start {link}"))
            api.add_update(message(api, CUSTOMER, "My parcel never arrived"))
            await eventually(lambda: any("parcel" in s.text for s in api.to(AGENT_USER)), WAIT)
            first = api.to(AGENT_USER)[0]
            assert f"email {EMAIL}" in first.text  # the link is on the card
            await asyncio.to_thread(
                imap_account.append, mail(1, sender=EMAIL, subject="Still no parcel")
            )
            await eventually(
                lambda: any("on support-email" in s.text for s in api.to(AGENT_USER)), WAIT
            )
        by_email = next(s for s in api.to(AGENT_USER) if "on support-email" in s.text)
        assert "body 1" in by_email.text  # the email itself
        # the Telegram conversation is in the email's context, and the link said why
        assert "Other recent conversations: #" in by_email.text
        assert " tg (open)" in by_email.text
        assert "Why you: You spoke with this customer on " in by_email.text
