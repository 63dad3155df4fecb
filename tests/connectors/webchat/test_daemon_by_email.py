"""A chat visitor answered by email, through the real daemon (embedded bus, SQLite store):
the agent's reply (written in her tool) reaches the chat and, threaded, the visitor's
mailbox (aiosmtpd); the visitor's email answer (in Dovecot, read by the email channel's
IMAP intake) joins the chat's conversation; the transcript asked in the chat arrives in
the same thread."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from router.config import parse_config
from router.connector import load_registry
from router.store.schema import conversations
from tests.connectors.webchat.helpers import KEY
from tests.connectors.webhook.helpers import SECRET, post_event, receiver
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running
from tests.harness.dovecot import ImapAccount
from tests.harness.smtp import CapturingSmtp

pytestmark = pytest.mark.imap

ORIGIN = "http://shop.test"
ANA = "ana@example.net"
WAIT = 30.0
_EVENTS = count(1)


def config_text(tmp: Path, account: ImapAccount, smtp: CapturingSmtp) -> str:
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: web
    type: webchat
    webchat:
      session_key: "${{CHAT_KEY}}"
      allowed_origins: ["{ORIGIN}"]
      answer_by_email: support-email
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
  - name: agent-hooks
    type: webhook
    webhook: {{secret: "${{HOOK_SECRET}}"}}
agents:
  - id: chloe
    name: Chloé Martin
    capacity: {{webchat: 3, email: 3}}
    sink: {{type: webhook, channel: agent-hooks, url: "${{CHLOE_URL}}", accepts: true}}
routing:
  assignment_timeout: 1h
"""
    )


def answer_mail(ours: EmailMessage, text: str) -> bytes:
    """Ana's answer to our email, as her mail client writes it."""
    msg = EmailMessage()
    msg["From"] = f"Ana <{ANA}>"
    msg["To"] = str(ours["Reply-To"] or ours["From"])
    msg["Subject"] = f"Re: {ours['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["In-Reply-To"] = ours["Message-ID"]
    msg["References"] = f"{ours['References']} {ours['Message-ID']}"
    msg.set_content(f"{text}\n\nOn Monday, support wrote:\n> {ours.get_content().strip()}\n")
    return bytes(msg)


async def test_a_visitor_is_answered_by_email_and_their_email_answer_joins_the_chat(
    imap_account: ImapAccount,
    smtp_server: CapturingSmtp,
    tmp_path: Path,
) -> None:
    specs = load_registry()
    async with receiver() as tool:
        env = {
            "CHAT_KEY": KEY,
            "HOOK_SECRET": SECRET,
            "CHLOE_URL": tool.url("/hooks/chloe"),
            "TEST_IMAP_PASSWORD": imap_account.password,
        }
        cfg = parse_config(config_text(tmp_path, imap_account, smtp_server), env=env)
        async with (
            running(cfg, registry=specs, watch_config=None, ready_within=WAIT) as daemon,
            aiohttp.ClientSession() as http,
        ):
            assert daemon.http is not None
            base = f"http://127.0.0.1:{daemon.http.port}"

            def deliveries() -> list[dict[str, Any]]:
                return [r.json() for r in tool.requests if r.json().get("token")]

            async def agent_says(text: str) -> None:
                await eventually(deliveries, WAIT)
                event = {
                    "id": f"tool-{next(_EVENTS)}",
                    "agent": "chloe",
                    "token": deliveries()[-1]["token"],
                    "type": "reply",
                    "text": text,
                }
                status, answer = await post_event(f"{base}/webhook/agent-hooks/events", event)
                assert status == 202, answer

            async with http.ws_connect(f"{base}/chat", headers={"Origin": ORIGIN}) as ws:

                async def until(t: str, **match: object) -> dict[str, Any]:
                    while True:
                        frame: dict[str, Any] = await ws.receive_json(timeout=WAIT)
                        if frame["t"] == t and all(frame.get(k) == v for k, v in match.items()):
                            return frame

                await ws.send_json({"t": "hello", "session": None, "last": 0})
                assert (await until("welcome"))["look"]["by_email"] is True
                await ws.send_json(
                    {
                        "t": "form",
                        "consent": True,
                        "reply_by_email": True,
                        "fields": {"name": "Ana", "email": ANA},
                    }
                )
                await until("form")
                await ws.send_json({"t": "msg", "cid": "c1", "text": "Where is my teapot?"})
                assert (await until("state", cid="c1"))["state"] == "sent"

                # Chloé answers in her tool: the chat shows it, and Ana's mailbox gets it.
                await agent_says("It ships today.")
                assert (await until("msg", **{"from": "agent"}))["text"] == "It ships today."
                await eventually(lambda: len(smtp_server.messages) == 1, WAIT)
                [first] = smtp_server.messages
                ours = first.message
                ref = deliveries()[-1]["context"]["conversation"]["ref"]
                assert first.recipients == [ANA]
                assert ours["Subject"] == f"Your conversation with us [#{ref}]"
                assert ours.get_content().strip() == "It ships today."
                root = str(ours["References"])
                assert root.startswith("<omni.thread.") and root.endswith("@shop.example>")
                chat_conversation = deliveries()[-1]["conversation_id"]

                # Ana answers the email: it joins the chat's conversation, and Chloé hears.
                seen = len(deliveries())
                await asyncio.to_thread(
                    imap_account.append, answer_mail(ours, "Thanks! Which carrier?")
                )
                await eventually(lambda: len(deliveries()) > seen, WAIT)
                latest = deliveries()[-1]
                assert latest["conversation_id"] == chat_conversation
                assert latest["context"]["conversation"]["channel"] == "web"
                texts = [m["text"] for m in latest["context"]["transcript"]]
                assert texts[-1] == "Thanks! Which carrier?"

                # Ana asks for the transcript in the chat: it comes in the same thread.
                await ws.send_json({"t": "transcript", "cid": "t1"})
                assert (await until("state", cid="t1"))["state"] == "sent"
                told = await until("msg", purpose="transcript_sent")
                assert told["text"] == f"We have emailed the transcript of this chat to {ANA}."
                await eventually(lambda: len(smtp_server.messages) == 2, WAIT)
                sent = smtp_server.messages[1].message
                assert sent["Subject"] == f"Re: Transcript of your conversation [#{ref}]"
                assert str(sent["References"]).split()[0] == root
                body = sent.get_content()
                said = ["Where is my teapot?", "It ships today.", "Thanks! Which carrier?"]
                assert [body.index(s) for s in said] == sorted(body.index(s) for s in said)
                assert "Chloé Martin:" in body and "You:" in body

            # One conversation: none was opened on the email channel.
            assert daemon.store is not None
            query = sa.select(conversations.c.channel)
            async with daemon.store.engine.connect() as conn:
                assert [row.channel for row in await conn.execute(query)] == ["web"]
