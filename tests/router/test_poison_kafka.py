"""Poison input on the real Kafka: the daemon keeps running, and every message reaches an
agent or the dead-letter topic with its reason.

An ordinary long email thread (six 90 KB messages) and one 700 KB message once
made deliveries over Kafka's record limit and stopped the daemon for good; a
record on a channel nobody configured was routed, and an agent reply in it
wedged the outbox. The router runs in its own process (`omnirouter run --only
router`) on Kafka with a SQLite store; inputs are produced with a plain client.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from router.envelope import Envelope, Sender, decode, envelope_id
from tests.harness.daemon import DaemonProcess, get, wait_for
from tests.router.test_routing_kafka import MAIL_CHANNEL, MAIL_ENV, produce, read_all

pytestmark = pytest.mark.kafka

CONFIG = (
    """\
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 2
  kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{prefix}router", instance_id: poison-1}}
store: {{url: "sqlite:///{tmp}/store.sqlite3"}}
logging: {{format: json, level: info}}
channels:
"""
    + MAIL_CHANNEL
    + """\
agents:
  - id: ana
    name: Ana
    capacity: {{email: 100}}
    sink: {{type: email, channel: mail, address: ana@corp.test}}
templates:
  ack:
    en: "Thanks, we will answer {{expected_response}} (ref {{conversation_ref}})."
"""
)


def email(run: str, n: int, thread: str, text: str, **changes: object) -> Envelope:
    native = f"<{run}-{n}@poison.test>"
    env = Envelope(
        id=envelope_id("mail", native),
        kind="message",
        direction="in",
        channel="mail",
        channel_type="email",
        thread_key=thread,
        sender=Sender(address="eva@poison.test", name="Eva"),
        received_at=datetime.now(UTC),
        subject="My order",
        text=text,
        meta={"message_id": native},
    )
    return env.model_copy(update=changes)


def test_long_threads_huge_messages_and_unknown_channels_do_not_stop_the_router(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"pk{run}."
    config = tmp_path / "channels.yaml"
    config.write_text(CONFIG.format(prefix=prefix, bootstrap=kafka_bootstrap, tmp=tmp_path))
    thread = [
        email(run, i, f"<thread-{run}@poison.test>", f"part {i} " + "x" * 90_000) for i in range(6)
    ]
    huge = email(run, 6, f"<huge-{run}@poison.test>", "y" * 700_000)
    unknown = email(run, 7, "<u@poison.test>", "hello", channel="no-such-channel")
    traversal = email(run, 8, "<t@poison.test>", "hello", channel="../../etc/passwd")
    stray_reply = email(
        run,
        9,
        "<u@poison.test>",
        "an agent's answer",
        kind="reply",
        channel="no-such-channel",
        sender=Sender(address="ana@corp.test", role="agent"),
    )
    inputs = [*thread, unknown, huge, traversal, stray_reply]

    daemon = DaemonProcess(config, tmp_path, "--only", "router", env=MAIL_ENV)
    try:
        wait_for(daemon.base + "/readyz", 200, 45)
        asyncio.run(produce(kafka_bootstrap, f"{prefix}inbound", inputs, lambda _: None))
        topics = [f"{prefix}agent.mail", f"{prefix}dlq"]
        deadline = time.monotonic() + 60
        while True:
            out, _ = asyncio.run(read_all(kafka_bootstrap, topics))
            deliveries = [decode(v) for v in out[f"{prefix}agent.mail"]]
            dead = [orjson.loads(v) for v in out[f"{prefix}dlq"]]
            if len(deliveries) >= 7 and len(dead) >= 3:
                break
            assert daemon.proc.poll() is None, f"the daemon stopped:\n{daemon.output()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"{len(deliveries)} deliveries, {len(dead)} dead letters\n"
                + daemon.output()[-4000:]
            )
            time.sleep(0.5)

        # Every customer message reached the agent, in deliveries Kafka could carry.
        delivered = {
            m["id"]
            for d in deliveries
            for m in d.delivery.model_dump(mode="json")["context"]["transcript"]
            if m["direction"] == "in"
        }
        assert {e.id for e in (*thread, huge)} <= delivered
        # The refused ones went to the DLQ with the reason, and nothing else did.
        reasons = {decode(d["value"]).id: d["reason"] for d in dead}
        assert set(reasons) == {unknown.id, traversal.id, stray_reply.id}
        assert "channel 'no-such-channel' is not configured" in reasons[unknown.id]
        assert "channel '../../etc/passwd' is not configured" in reasons[traversal.id]
        # Still running and ready, with nothing stuck in the outbox.
        assert daemon.proc.poll() is None
        assert get(daemon.base + "/readyz")[0] == 200
        with sqlite3.connect(tmp_path / "store.sqlite3") as db:
            [(unsent,)] = db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            [(conversations,)] = db.execute("SELECT count(*) FROM conversations")
        assert unsent == 0
        assert conversations == 2  # the thread and the huge message; none for the refused
        code, _ = daemon.stop()
        assert code == 0
    finally:
        daemon.kill()
