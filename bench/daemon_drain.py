"""The real daemon draining a backlog: messages/s of `omnirouter run` as its own process on
Kafka, read from its output topics, next to raw aiokafka pass-through in the same run.

    python bench/daemon_drain.py [--messages 5000] [--threads 1000] [--kafka HOST:PORT]
                           [--postgres URL] [--no-postgres] [--timeout 300]
                           [--raw-messages 20000]

What runs (everything on 127.0.0.1, stopped and removed at the end, even on failure):

- a Kafka broker (tests/harness/kafka.py; `--kafka` uses a running one instead), and,
  unless `--no-postgres`, a throwaway PostgreSQL cluster (tests/harness/postgres.py,
  durable as the SQLite store: fsync and synchronous_commit on; `--postgres` uses a
  server whose admin URL is given, and reports its settings);
- per store (SQLite, then PostgreSQL): the daemon as operators run it
  (`python -m router.cli run -c <config> --only router`, the `omnirouter run` entry
  point): Kafka bus, the store, a disabled web chat channel for the customers, and
  four agents whose sink is a webhook channel. `--only router` runs the router and not
  the webhook connector (in production it may run in its own process), so no agents'
  tool is needed and the agents still count as reachable: they are assigned.

The bench creates the topics, produces `--messages` customer messages spread over
`--threads` conversations onto `<prefix>inbound` before the daemon starts, then
starts it and reads its output topics with its own consumer until every message is
in an agent delivery (the inbound entries of a delivery's transcript are the customer
messages it carries) or `--timeout` runs out. The rate is messages over the time from
the first output record to the last (their broker timestamps, so the daemon's start-up
is left out). The daemon is then stopped with SIGTERM and waited for. The baseline:
raw aiokafka pass-through of the same records on the same broker
(`bench/routing.py`'s `raw_passthrough`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench.crash import AGENTS, customer_message, daemon_config  # noqa: E402
from bench.routing import (  # noqa: E402
    CORPUS,
    postgres_database,
    postgres_durability,
    postgres_server,
    produce_all,
    raw_passthrough,
)
from router.bus import KafkaBus  # noqa: E402
from router.bus.base import Topics  # noqa: E402
from router.envelope import Envelope, encode  # noqa: E402
from tests.harness.daemon import DaemonProcess  # noqa: E402
from tests.harness.kafka import broker_at  # noqa: E402

STOP_SECONDS = 60.0
SECRET = "daemon-bench-signing-secret"

# The daemon's config: crash.py's (agents behind an enabled webhook channel, so they are
# reachable, whose connector `--only router` does not run); their tool is never called.
NO_TOOL = "http://127.0.0.1:9/"


def customer_messages(run: str, n: int, threads: int) -> list[Envelope]:
    """`n` messages over `threads` conversations, each conversation's spread over the run."""
    return [
        customer_message(run, i, conversation=i % threads, text=CORPUS[i % len(CORPUS)][1])
        for i in range(n)
    ]


@dataclass
class Drain:
    label: str
    messages: int
    delivered: int = 0  # messages found in an agent delivery
    records: int = 0  # on every output topic
    first_ms: int = 0  # broker timestamps of the first and last output record
    last_ms: int = 0
    startup_s: float = 0.0  # daemon started -> first output read
    stop: str = "-"
    failures: int = 0  # "component failed" log lines
    kinds: Counter[str] = field(default_factory=Counter)  # output records by topic and event

    @property
    def rate(self) -> float:
        span = (self.last_ms - self.first_ms) / 1000
        return self.delivered / span if span > 0 else 0.0


async def read_outputs(
    bootstrap: str,
    topics: list[str],
    agents_topic: str,
    want: set[str],
    drain: Drain,
    ready: asyncio.Event,
    started: list[float],
) -> None:
    """Read the output topics from their beginning until every id in `want` was delivered."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ready.set()
        while want:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                for r in records:
                    if not drain.records:
                        drain.startup_s = time.monotonic() - started[0]
                    drain.records += 1
                    drain.first_ms = min(drain.first_ms or r.timestamp, r.timestamp)
                    drain.last_ms = max(drain.last_ms, r.timestamp)
                    delivery = orjson.loads(r.value).get("delivery") or {}
                    drain.kinds[f"{tp.topic.rsplit('.', 2)[-2]} {delivery.get('event', '')}"] += 1
                    if tp.topic != agents_topic:
                        continue
                    for entry in (delivery.get("context") or {}).get("transcript", ()):
                        if entry.get("direction") == "in" and entry.get("id") in want:
                            want.discard(entry["id"])
                            drain.delivered += 1
    finally:
        await consumer.stop()


async def drain_run(
    args: argparse.Namespace, bootstrap: str, store: str, label: str, tmp: Path
) -> Drain:
    run = uuid.uuid4().hex[:8]
    prefix = f"dbench{run}."
    topics = Topics(prefix=prefix)
    agents_topic = topics.agent("hooks")
    outputs = [agents_topic, topics.outbound("chat"), topics.dlq]
    async with KafkaBus(bootstrap, partitions=6) as admin:
        await admin.ensure_topics([topics.inbound, *outputs])
    envelopes = customer_messages(run, args.messages, args.threads)
    await produce_all(bootstrap, topics.inbound, [(e.bus_key(), encode(e)) for e in envelopes])
    cwd = tmp / label
    cwd.mkdir()
    config = cwd / "omnirouter.yaml"
    config.write_text(daemon_config(prefix, bootstrap, store, cwd))
    drain = Drain(label, len(envelopes))
    want = {e.id for e in envelopes}
    ready = asyncio.Event()
    started = [time.monotonic()]
    reader = asyncio.create_task(
        read_outputs(bootstrap, outputs, agents_topic, want, drain, ready, started)
    )
    daemon: DaemonProcess | None = None
    try:
        await asyncio.wait_for(ready.wait(), 30)
        started[0] = time.monotonic()
        env = {"HOOK_SECRET": SECRET} | {f"TOOL_A{i}": f"{NO_TOOL}a{i}" for i in range(AGENTS)}
        daemon = DaemonProcess(config, cwd, "--only", "router", env=env)
        deadline = time.monotonic() + args.timeout
        while not reader.done() and time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with {daemon.proc.returncode}:\n{daemon.output()[-3000:]}"
                )
            await asyncio.wait({reader}, timeout=0.5)
        if reader.done():
            reader.result()  # raises what the reader met
        code, took = await asyncio.to_thread(daemon.stop, signal.SIGTERM, STOP_SECONDS)
        drain.stop = f"exit {code} in {took:.1f} s"
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if daemon is not None:
            daemon.kill()  # no-op when it exited
            drain.failures = daemon.output().count("component failed")
    return drain


def row(d: Drain, raw: float) -> str:
    share = 100 * d.rate / raw if raw else 0.0
    span = (d.last_ms - d.first_ms) / 1000
    note = "" if d.delivered == d.messages else f"  (timed out: {d.delivered:,} delivered)"
    if d.failures:
        note += f"  ({d.failures} 'component failed' log lines)"
    return (
        f"{d.label:<44} {d.delivered:>6,} {d.records:>8,} {span:>7.1f} {d.rate:>8,.0f}"
        f" {share:>6.1f}% {d.startup_s:>8.1f}  {d.stop}{note}"
    )


async def bench(args: argparse.Namespace, bootstrap: str, pg_server: str | None) -> None:
    run = uuid.uuid4().hex[:8]
    envelopes = customer_messages(run, args.messages, args.threads)
    records = [(e.bus_key(), encode(e)) for e in envelopes]
    records = (records * (args.raw_messages // len(records) + 1))[: max(args.raw_messages, 1)]
    baseline = await raw_passthrough(bootstrap, records, sequential=False)
    print(
        f"\n{args.messages:,} customer messages over {args.threads:,} conversations,"
        f" pre-produced; daemon: python -m router.cli run --only router, {AGENTS} agents"
    )
    if pg_server:
        print(f"durability: SQLite synchronous=FULL; PostgreSQL {args.pg_durability}")
    print(
        f"{'pipeline':<44} {'msgs':>6} {'outputs':>8} {'seconds':>7} {'msgs/s':>8} {'% raw':>7}"
        f" {'start s':>8}  stop"
    )
    print(
        f"{baseline.name:<44} {baseline.n:>6,} {baseline.n:>8,} {baseline.seconds:>7.1f}"
        f" {baseline.rate:>8,.0f} {100.0:>6.1f}%",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="omnirouter-daemon-bench-") as name:
        tmp = Path(name)
        d = await drain_run(args, bootstrap, f"sqlite:///{tmp}/store.sqlite3", "sqlite", tmp)
        d.label = "omnirouter run, store on SQLite"
        print(row(d, baseline.rate), flush=True)
        drains = [d]
        if pg_server:
            with postgres_database(pg_server, "omni_daemon") as url:
                d = await drain_run(args, bootstrap, url, "postgres", tmp)
            d.label = "omnirouter run, store on PostgreSQL"
            print(row(d, baseline.rate), flush=True)
            drains.append(d)
    for d in drains:
        kinds = ", ".join(f"{k.strip()} {v:,}" for k, v in sorted(d.kinds.items()))
        print(f"  {d.label}: output records by topic and event: {kinds}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1000, help="conversations")
    p.add_argument("--raw-messages", type=int, default=20_000, help="records for the baseline")
    p.add_argument("--kafka", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument("--postgres", metavar="URL", help="admin URL of a server (CREATEDB needed)")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per store, at most")
    args = p.parse_args(argv)
    if args.messages < 1 or not 1 <= args.threads <= args.messages:
        p.error("need --messages >= 1 and 1 <= --threads <= --messages")

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every cleanup

    signal.signal(signal.SIGTERM, interrupted)
    started = time.perf_counter()
    print(
        f"bench/daemon_drain.py: python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews every row)",
        flush=True,
    )
    pg_ctx = contextlib.nullcontext(None) if args.no_postgres else postgres_server(args.postgres)
    with pg_ctx as pg_server, broker_at(args.kafka) as bootstrap:
        args.pg_durability = postgres_durability(pg_server) if pg_server else ""
        asyncio.run(bench(args, bootstrap, pg_server))
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
