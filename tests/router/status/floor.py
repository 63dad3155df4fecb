"""A daemon with a busy floor, for the supervisor page's tests: a customer channel held
in memory (`chat`) whose messages queue behind Ana (capacity 1), a channel that refuses
its password (`broken`, down), agents away, off shift and unreachable, an urgent
conversation past its 1-second target (an SLA breach: an incident, overdue), and the
supervisor page on behind a password."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from router.config import parse_config
from router.connector.testing import MemoryConnector
from router.daemon import Daemon
from router.envelope import Envelope, Sender, envelope_id
from router.status.password import make
from tests.connectors.webhook.helpers import SECRET, Receiver, receiver
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running
from tests.router.test_daemon import Registry

PASSWORD = "correct horse battery staple"
# Made once: scrypt at full cost takes a while, and every test reads the same hash.
HASH = make(PASSWORD)
REFUSED = "login refused: wrong password"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _closed_today() -> str:
    """A weekday three days from now: Cy's schedule, so Cy is off shift today."""
    return DAYS[(datetime.now(UTC).weekday() + 3) % 7]


def config_text(tmp: Path, tool_url: str, *, supervisor: bool = True) -> str:
    block = 'supervisor: {password_hash: "${SUP_HASH}", refresh_seconds: 30}\n'
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: chat
    type: memory
  - name: broken
    type: memory
    memory: {{refuse_start: "{REFUSED}"}}
  - name: agent-hooks
    type: webhook
    webhook: {{secret: "${{HOOK_SECRET}}"}}
  - name: old-hooks
    type: webhook
    enabled: false
    webhook: {{secret: "${{OLD_HOOK_SECRET}}"}}
skills:
  - name: billing
queues:
  - name: general
  - name: billing
    skills: {{billing: 1}}
agents:
  - id: ana
    name: Ana Pérez
    capacity: {{memory: 1}}
    sink: {{type: webhook, channel: agent-hooks, url: "{tool_url}"}}
  - id: ben
    name: Ben Okafor
    status: away
    capacity: {{memory: 2}}
    sink: {{type: webhook, channel: agent-hooks, url: "{tool_url}"}}
  - id: cy
    name: Cy Novak
    schedule: late
    capacity: {{memory: 2}}
    sink: {{type: webhook, channel: agent-hooks, url: "{tool_url}"}}
  - id: dee
    name: Dee Laine
    capacity: {{memory: 2}}
    sink: {{type: webhook, channel: old-hooks, url: "{tool_url}"}}
business_hours:
  late:
    timezone: UTC
    weekly: {{{_closed_today()}: ["09:00-17:00"]}}
routing:
  default_queue: general
  assignment_timeout: 1h
  rules:
    - name: billing
      match: {{keywords: [invoice]}}
      then: {{skills: {{billing: 1}}, queue: billing}}
    - name: urgent
      match: {{keywords: [urgent]}}
      then: {{priority: urgent}}
sla:
  first_response:
    memory: {{normal: 10m, urgent: 1s}}
"""
        + (block if supervisor else "")
    )


def message(native: str, sender: str, text: str) -> Envelope:
    return Envelope(
        id=envelope_id("chat", native),
        kind="message",
        direction="in",
        channel="chat",
        channel_type="memory",
        thread_key=native,
        sender=Sender(address=sender, name=sender.title(), role="customer"),
        received_at=datetime.now(UTC),
        text=text,
    )


@dataclass
class Floor:
    daemon: Daemon
    tool: Receiver
    config: Path

    @property
    def base(self) -> str:
        assert self.daemon.http is not None
        return f"http://127.0.0.1:{self.daemon.http.port}"


@asynccontextmanager
async def busy_floor(tmp: Path, *, supervisor: bool = True) -> AsyncIterator[Floor]:
    """The daemon on `config_text` with four customers written in (Ana has one, three
    wait: one about an invoice, one urgent, breached within a second) and one input
    that is no envelope (dead-lettered)."""
    with environment(HOOK_SECRET=SECRET, SUP_HASH=HASH):
        async with _floor(tmp, supervisor) as floor:
            yield floor


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Variables the config names, set for the block (a reload reads them again)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@asynccontextmanager
async def _floor(tmp: Path, supervisor: bool) -> AsyncIterator[Floor]:
    reg = Registry()
    async with receiver() as tool:
        path = tmp / "channels.yaml"
        path.write_text(config_text(tmp, tool.url(), supervisor=supervisor), encoding="utf-8")
        config = parse_config(path.read_text(encoding="utf-8"), registry=reg.specs)
        async with running(
            config, registry=reg.specs, config_path=path, watch_config=None
        ) as daemon:
            chat: MemoryConnector = reg.built["chat"]
            chat.offer(message("t1", "eva", "hello, where is my teapot?"))
            chat.offer(message("t2", "fred", "my invoice is wrong"))
            chat.offer(message("t3", "gus", "urgent: the lid broke"))
            chat.offer(message("t4", "hana", "do you ship to Oslo?"))
            chat.offer_raw(b"\x00 not an envelope")  # refused: a dead letter
            await eventually(lambda: len(chat.acks) == 5, 20)
            await eventually(lambda: bool(tool.requests), 20)  # Ana got hers
            assert daemon.engine is not None
            engine = daemon.engine

            async def queued() -> bool:
                return await engine.waiting_count() == 3

            await eventually(queued, 20)  # and the others wait
            await eventually(lambda: any(r.down for r in daemon.channels), 20)  # `broken`
            yield Floor(daemon, tool, path)
