"""An agent who works in an HTTP tool, through the real daemon and the embedded bus.

A customer writes on the in-memory `chat` channel → the router assigns the
conversation to Chloé, whose sink is the `agent-hooks` webhook channel → the
delivery, with its context and token, is POSTed to her tool (a real HTTP
server on 127.0.0.1) → the tool POSTs `accept` (the assignment timeout is
cancelled) and her reply (it goes out on `chat`, in the customer's thread);
a reply with a forged token reaches no customer and Chloé is told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.webhook.inbound import verify
from router.config import parse_config
from router.daemon import Daemon
from router.store import open_store
from tests.connectors.webhook.helpers import KEY, SECRET, post_event, receiver
from tests.harness.common import eventually as wait_until
from tests.harness.daemon import embedded_config, running
from tests.router.test_daemon import Registry, message

CHAT_HTTP_TIMEOUT = 20.0


def config_text(tmp: Path) -> str:
    return (
        embedded_config(tmp)
        + """
channels:
  - name: chat
    type: memory
  - name: agent-hooks
    type: webhook
    webhook: {secret: "${HOOK_SECRET}"}
agents:
  - id: chloe
    name: Chloé Martin
    capacity: {memory: 3}
    sink: {type: webhook, channel: agent-hooks, url: "${CHLOE_URL}", accepts: true}
routing:
  assignment_timeout: 1h
"""
    )


async def eventually(check: Callable[[], bool]) -> None:
    await wait_until(check, CHAT_HTTP_TIMEOUT)


def decided(daemon: Daemon, action: str) -> float:
    value: float = daemon.metrics.decisions.labels(action=action)._value.get()
    return value


async def rows(tmp: Path, sql: str) -> list[Any]:
    store = await open_store(f"sqlite:///{tmp}/store.sqlite3", migrate=False)
    try:
        async with store.transaction(readonly=True) as conn:
            return list(await conn.execute(sa.text(sql)))
    finally:
        await store.close()


async def test_delivery_accept_and_reply_through_the_daemon(tmp_path: Path) -> None:
    reg = Registry()
    async with receiver() as tool:
        env = {"HOOK_SECRET": SECRET, "CHLOE_URL": tool.url("/hooks/chloe?k=urlsecret")}
        cfg = parse_config(config_text(tmp_path), env=env, registry=reg.specs)
        async with running(
            cfg, registry=reg.specs, watch_config=None, ready_within=CHAT_HTTP_TIMEOUT
        ) as daemon:
            assert daemon.http is not None
            events_url = f"http://127.0.0.1:{daemon.http.port}/webhook/agent-hooks/events"

            # 1. The customer writes; the assignment is POSTed to Chloé's tool.
            chat = reg.built["chat"]
            first = message("chat", "m1")
            chat.offer(first)
            await eventually(lambda: len(tool.requests) >= 1)
            [posted] = tool.requests
            assert posted.path_qs == "/hooks/chloe?k=urlsecret"
            verify(
                KEY,
                posted.headers["X-Omnirouter-Timestamp"],
                posted.headers["X-Omnirouter-Signature"],
                posted.body,
                now=time.time(),
                max_skew=60,
            )
            delivery = posted.json()
            assert posted.headers["X-Omnirouter-Id"] == delivery["id"]
            assert delivery["event"] == "assigned"
            assert delivery["agent"] == {
                "id": "chloe",
                "name": "Chloé Martin",
                "timezone": None,
                "language": "en",
            }
            conv_id = delivery["conversation_id"]
            token = delivery["token"]
            assert conv_id and token.startswith(conv_id + ".")
            context = delivery["context"]
            assert context["customer"]["name"] == "Ana"
            assert context["conversation"]["id"] == conv_id
            assert [m["text"] for m in context["transcript"]] == ["hello m1"]
            assert "hello m1" in delivery["text"]

            # The URL is a credential: it reached the tool from the config, never the bus.
            written = await rows(tmp_path, "SELECT value FROM outbox")
            assert written and not any(b"urlsecret" in bytes(r[0]) for r in written)

            # The untaken assignment is waiting on its timeout.
            pending = (
                "SELECT cancelled_at FROM timers"
                f" WHERE kind = 'assignment_timeout' AND conversation_id = '{conv_id}'"
            )
            assert [r[0] for r in await rows(tmp_path, pending)] == [None]

            # 2. Chloé takes it from her tool: the timeout is cancelled.
            accept = {
                "id": "tool-evt-1",
                "agent": "chloe",
                "token": token,
                "type": "command",
                "command": "accept",
            }
            status, answer = await post_event(events_url, accept)
            assert status == 202
            await eventually(lambda: decided(daemon, "accept") == 1)
            [(cancelled,)] = await rows(tmp_path, pending)
            assert cancelled is not None
            accepted = f"SELECT accepted_at FROM assignments WHERE conversation_id = '{conv_id}'"
            [(accepted_at,)] = await rows(tmp_path, accepted)
            assert accepted_at is not None

            # 3. Her reply goes out on the customer's channel, in the customer's thread.
            reply = {
                "id": "tool-evt-2",
                "agent": "chloe",
                "token": token,
                "type": "reply",
                "text": "Hi Ana, sorted: the refund is on its way.",
            }
            status, answer = await post_event(events_url, reply)
            assert status == 202
            await eventually(lambda: any(e.kind == "reply" for e in chat.sent))
            [out] = [e for e in chat.sent if e.kind == "reply" and "refund" in e.text]
            assert out.text == reply["text"]
            assert (out.channel, out.thread_key, out.direction) == ("chat", "t1", "out")
            assert out.sender.address == "chloe" and out.sender.role == "agent"
            assert out.conversation_id == conv_id
            assert decided(daemon, "reply_out") == 1

            # 4. The tool sends the same event again (it never saw our 202): one reply only.
            assert (await post_event(events_url, reply)) == (202, answer)
            await eventually(lambda: daemon.metrics.duplicates._value.get() >= 1)

            # 5. A forged token reaches no customer; Chloé's tool is told.
            forged = {**reply, "id": "tool-evt-3", "token": conv_id + ".forged", "text": "FORGED"}
            assert (await post_event(events_url, forged))[0] == 202
            await eventually(lambda: any(r.json()["event"] == "rejected" for r in tool.requests))
            notice = next(r.json() for r in tool.requests if r.json()["event"] == "rejected")
            assert "invalid conversation token" in notice["text"]
            assert notice["token"] is None
            await asyncio.sleep(0.3)
            assert not any("FORGED" in e.text for e in chat.sent)
            assert len([e for e in chat.sent if "refund" in e.text]) == 1
