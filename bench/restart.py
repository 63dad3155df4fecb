"""How long a SIGKILLed router takes, once restarted, to consume again: with Kafka's static
group membership (`bus.kafka.instance_id`) and without it, in the same run.

Without it the restarted process joins as a new member and its partitions stay
with the dead one until that member's session expires; with it the broker
hands the same member its partitions back at once. Starts its own broker
(tests/harness/kafka.py) unless given `--kafka`.

    python bench/restart.py [--kafka HOST:PORT] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from router.envelope import Envelope, Sender, encode, envelope_id  # noqa: E402
from tests.harness.daemon import DaemonProcess, wait_for  # noqa: E402
from tests.harness.kafka import broker_at  # noqa: E402

CONFIG = """\
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 2
  kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{prefix}router"{instance}}}
store: {{url: "sqlite:///{tmp}/store.sqlite3"}}
logging: {{format: json, level: info}}
channels:
  - name: chat
    type: webchat
    enabled: false
    webchat: {{path: /chat}}
"""


def message(n: int) -> Envelope:
    return Envelope(
        id=envelope_id("chat", f"restart-{uuid.uuid4().hex}-{n}"),
        kind="message",
        direction="in",
        channel="chat",
        channel_type="webchat",
        thread_key=f"s{n % 4}",
        sender=Sender(address=f"visitor-{n % 4}"),
        received_at=datetime.now(UTC),
        text="hello",
    )


async def produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for env in envelopes:
            await producer.send_and_wait(topic, encode(env), key=env.bus_key())
    finally:
        await producer.stop()


def consumed(daemon: DaemonProcess, ids: set[str]) -> bool:
    out = daemon.output()
    return all(i in out for i in ids)


def one_round(bootstrap: str, static: bool, work: Path) -> float:
    """Seconds from the restarted process's start to its consuming every new record."""
    prefix = f"rs{uuid.uuid4().hex[:8]}."
    instance = ', instance_id: "bench-1"' if static else ""
    config = work / f"{prefix}yaml"
    config.write_text(
        CONFIG.format(prefix=prefix, bootstrap=bootstrap, tmp=work, instance=instance)
    )
    first = DaemonProcess(config, work, "--only", "router")
    try:
        wait_for(first.base + "/readyz", 200, 60)
        before = [message(i) for i in range(4)]
        asyncio.run(produce(bootstrap, f"{prefix}inbound", before))
        deadline = time.monotonic() + 60
        while not consumed(first, {e.id for e in before}):
            assert time.monotonic() < deadline, first.output()[-2000:]
            time.sleep(0.05)
    finally:
        first.kill()  # SIGKILL: the group still counts the dead member
    after = [message(i) for i in range(4)]
    asyncio.run(produce(bootstrap, f"{prefix}inbound", after))
    started = time.monotonic()
    second = DaemonProcess(config, work, "--only", "router")
    try:
        deadline = started + 120
        while not consumed(second, {e.id for e in after}):
            assert time.monotonic() < deadline, second.output()[-2000:]
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        second.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", help="bootstrap HOST:PORT (default: start a broker)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    modes = {"dynamic membership (baseline)": False, "static (instance_id)": True}
    rows: dict[str, list[float]] = {name: [] for name in modes}
    with broker_at(args.kafka) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, static in modes.items():
                work = Path(tmp) / f"{r}-{static}"
                work.mkdir()
                rows[name].append(one_round(bootstrap, static, work))
    print(f"{'restart -> consuming again':32} {'median s':>9} {'max s':>7}  rounds")
    for name, values in rows.items():
        print(f"{name:32} {statistics.median(values):9.2f} {max(values):7.2f}  {len(values)}")
    print("(includes the process's own start-up, the same in both rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
