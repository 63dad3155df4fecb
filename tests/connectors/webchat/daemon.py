"""The web chat in the real daemon (embedded bus, SQLite store), with an agent, Chloé,
who works in an HTTP tool (a webhook channel): what she writes there reaches the chat
through the router. A phone line (not started) carries the chat's callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import sqlalchemy as sa

from connectors.webchat.connector import WebchatConnector
from router.config import parse_config
from router.connector import load_registry
from router.daemon import Daemon
from router.store.schema import conversations
from tests.connectors.webchat.helpers import KEY
from tests.connectors.webhook.helpers import SECRET, Receiver, post_event, receiver
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running

WAIT = 20.0
_EVENTS = count(1)  # the tool's event ids
ACK = "Thanks, we will answer {expected_response} (ref {conversation_ref})."
CLOSED_ACK = "Thanks, we are closed now: we open {opens_at} and answer then."
FOLLOW_UP = "Hi {customer_name}, {agent_name} here again: is it solved?"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def closed_day() -> str:
    """A weekday three days from now: the `web-closed` channel is closed today and tomorrow."""
    return DAYS[(datetime.now(UTC).weekday() + 3) % 7]


def config_text(tmp: Path, origin: str) -> str:
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: web
    type: webchat
    acknowledge: ack
    webchat:
      session_key: "${{CHAT_KEY}}"
      allowed_origins: ["{origin}"]
      title: "Acme Support"
  - name: web-closed
    type: webchat
    acknowledge: closed_ack
    business_hours: shop
    webchat:
      path: /closed-chat
      session_key: "${{CHAT_KEY}}"
      allowed_origins: ["{origin}"]
      title: "Acme Support"
      form: [name, email]
  - name: web-form
    type: webchat
    acknowledge: ack
    webchat:
      path: /form-chat
      session_key: "${{CHAT_KEY}}"
      allowed_origins: ["{origin}"]
      title: "Acme Support"
      color: "#7a1f5c"
      form: [name, email, topic]
      topics: [Orders, Returns]
      texts: {{en: {{greeting: "Hello! Who are we talking to?"}}}}
  - name: agent-hooks
    type: webhook
    webhook: {{secret: "${{HOOK_SECRET}}"}}
  # Where a "call me back" lives: no PBX in this test, so the line takes no input.
  - name: line
    type: phone
    enabled: false
    phone: {{webhook_path: null, default_region: ES}}
agents:
  - id: chloe
    name: Chloé Martin
    capacity: {{webchat: 3, phone: 1}}
    sink: {{type: webhook, channel: agent-hooks, url: "${{CHLOE_URL}}", accepts: true}}
business_hours:
  shop:
    timezone: UTC
    weekly: {{{closed_day()}: ["09:00-17:00"]}}
routing:
  assignment_timeout: 1h
  standing_interval: 1s
sla:
  follow_up_after: 1s
  follow_up_template: follow_up
templates:
  ack:
    en: "{ACK}"
  closed_ack:
    en: "{CLOSED_ACK}"
  follow_up:
    en: "{FOLLOW_UP}"
"""
    )


@dataclass
class Site:
    daemon: Daemon
    tool: Receiver  # Chloé's tool: deliveries arrive here
    base: str  # http://127.0.0.1:<port>

    @property
    def chat_url(self) -> str:
        return f"{self.base}/chat"

    @property
    def closed_chat_url(self) -> str:
        return f"{self.base}/closed-chat"

    @property
    def form_chat_url(self) -> str:
        return f"{self.base}/form-chat"

    @property
    def webchat(self) -> WebchatConnector:
        [runner] = [r for r in self.daemon.channels if r.name == "web"]
        connector = runner._connector
        assert isinstance(connector, WebchatConnector)
        return connector

    def tokens(self) -> list[str]:
        """The conversation tokens of the deliveries to Chloé, oldest first."""
        return [r.json()["token"] for r in self.tool.requests if r.json().get("token")]

    async def token(self) -> str:
        """The conversation token of the latest delivery to Chloé."""
        await eventually(lambda: self.tokens(), WAIT)
        return self.tokens()[-1]

    async def agent_does(self, command: str, token: str) -> None:
        event = {
            "id": f"tool-{next(_EVENTS)}",
            "agent": "chloe",
            "token": token,
            "type": "command",
            "command": command,
        }
        status, answer = await post_event(f"{self.base}/webhook/agent-hooks/events", event)
        assert status == 202, answer

    async def agent_says(self, text: str) -> None:
        await self._event({"type": "reply", "text": text})

    async def agent_signals(self, kind: str) -> None:
        """Chloé's tool says she is `typing`, or has `seen` the messages."""
        await self._event({"type": kind})

    async def agent_resolves(self) -> None:
        await self._event({"type": "command", "command": "resolve"})

    async def _event(self, what: dict[str, str]) -> None:
        event = {
            "id": f"tool-{next(_EVENTS)}",
            "agent": "chloe",
            "token": await self.token(),
            **what,
        }
        status, answer = await post_event(f"{self.base}/webhook/agent-hooks/events", event)
        assert status == 202, answer

    async def statuses(self, channel: str) -> list[str]:
        """The status of each conversation on `channel`, from the router's store."""
        assert self.daemon.store is not None
        query = sa.select(conversations.c.status).where(conversations.c.channel == channel)
        async with self.daemon.store.engine.connect() as conn:
            return [row.status for row in await conn.execute(query)]

    def cut_sockets(self) -> int:
        """Close every chat socket's TCP connection from the server side, as a proxy would."""
        sockets = list(self.webchat._sockets)
        for ws in sockets:
            assert ws._req is not None and ws._req.transport is not None
            ws._req.transport.close()
        return len(sockets)


@asynccontextmanager
async def site(tmp: Path, origin: str) -> AsyncIterator[Site]:
    specs = load_registry()
    async with receiver() as tool:
        env = {"CHAT_KEY": KEY, "HOOK_SECRET": SECRET, "CHLOE_URL": tool.url("/hooks/chloe")}
        cfg = parse_config(config_text(tmp, origin), env=env, registry=specs)
        async with running(cfg, registry=specs, watch_config=None, ready_within=WAIT) as daemon:
            assert daemon.http is not None
            yield Site(daemon, tool, f"http://127.0.0.1:{daemon.http.port}")
