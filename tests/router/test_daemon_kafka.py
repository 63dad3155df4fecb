"""The running daemon and the outside world agree on topics and encoding.

Records are produced with Kafka's own console producer (from the broker's
jars), not with our code, and the daemon consumes them from `omni.inbound`.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from router.envelope import Envelope, Sender, encode, envelope_id
from tests.harness.daemon import DaemonProcess, wait_for
from tests.harness.kafka import java_executable, kafka_classpath

pytestmark = pytest.mark.kafka


def console_produce(bootstrap: str, topic: str, lines: list[tuple[str, bytes]]) -> None:
    payload = b"".join(key.encode() + b"\t" + value + b"\n" for key, value in lines)
    subprocess.run(
        [
            java_executable(),
            "-Xmx256m",
            "-cp",
            kafka_classpath(),
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=\t",
        ],
        input=payload,
        check=True,
        timeout=90,
        capture_output=True,
    )


def test_record_from_kafka_cli_is_consumed_by_daemon(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    config = tmp_path / "channels.yaml"
    config.write_text(
        f"""
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 3
  kafka:
    bootstrap_servers: "{kafka_bootstrap}"
store:
  url: "sqlite:///{tmp_path}/store.sqlite3"
logging: {{format: json}}
channels:
  - name: support-email
    type: email
    enabled: false
    email:
      imap: {{host: imap.test, username: support@corp.test, password: "${{E2E_UNSET}}"}}
      smtp:
        host: smtp.test
        username: support@corp.test
        password: "${{E2E_UNSET}}"
        from_address: support@corp.test
"""
    )
    daemon = DaemonProcess(config, tmp_path)
    try:
        wait_for(daemon.base + "/readyz", 200, 60)
        env = Envelope(
            id=envelope_id("support-email", "<cli-1@example.com>"),
            kind="message",
            direction="in",
            channel="support-email",
            channel_type="email",
            thread_key="<cli-1@example.com>",
            sender=Sender(address="ana@example.com", name="Ana"),
            received_at=datetime.now(UTC),
            subject="From the CLI",
            text="hello",
        )
        # The console producer reads one record a line: the envelope's JSON has none.
        assert b"\n" not in encode(env)
        console_produce(
            kafka_bootstrap,
            f"{prefix}inbound",
            [(env.bus_key().decode(), encode(env)), ("garbage", b'{"v": 9}')],
        )
        daemon.wait_for_log(env.id, seconds=60)
        daemon.wait_for_log("record dead-lettered", seconds=30)
        consumed = [orjson.loads(line) for line in daemon.output().splitlines() if env.id in line]
        assert consumed[0]["event"] == "inbound record consumed"
        assert consumed[0]["channel"] == "support-email"
        assert "unsupported envelope version 9" in daemon.output()
        code, took = daemon.stop()
        assert code == 0, daemon.output()[-4000:]
        assert took < 10
    finally:
        daemon.kill()
