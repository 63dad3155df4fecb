"""Crash bench: how many deliveries reach an agent's tool twice when the daemon is
SIGKILLed while it is busy, and that none is lost.

    python bench/crash.py [--messages 1500] [--kills 10] [--store sqlite|postgres]
                          [--kafka HOST:PORT] [--tool-latency 0] [--seed 7]

What runs (everything on 127.0.0.1, stopped and removed at the end, even on failure):

- a Kafka broker (tests/harness/kafka.py; `--kafka` uses a running one instead);
- with `--store postgres`, a throwaway PostgreSQL cluster (tests/harness/postgres.py);
- the agents' tool: an aiohttp server that answers every webhook delivery with 200
  (after `--tool-latency` seconds) and counts the `X-Omnirouter-Id` of each POST;
- the daemon in its own process (`python -m router.cli run`, as operators run it):
  Kafka bus, the store, a web chat channel for the customers and a webhook channel
  for four agents whose sinks are the tool.

The bench produces N customer messages onto `omni.inbound`, one conversation each
(so each makes exactly one delivery), with Kafka's client straight, not through the
daemon. It SIGKILLs the daemon K times, each time once the tool has seen a
new POST since the restart and a random share of the work is done (spread over
5-90% of it), a moment later (0-0.3 s, random), and starts it again at once. After
the last restart it waits (bounded) until every message reached the tool, then
until the tool has been quiet for a few seconds, and stops the daemon with SIGTERM.

Report: deliveries received (POSTs), distinct delivery ids, repeats (POSTs beyond
the first per id: total, ids repeated, most POSTs of one id), lost messages (must be
0), and where repeats come from: records on the agents' topic beyond one per id
were published again by the router's outbox; POSTs beyond the records were sent
again by the webhook channel's outbound loop after a restart.
The exit code is 1 when a message was lost or the daemon failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from router.envelope import Envelope, Sender, encode, envelope_id  # noqa: E402
from tests.harness.common import free_port  # noqa: E402
from tests.harness.daemon import DaemonProcess  # noqa: E402
from tests.harness.kafka import broker_at  # noqa: E402

SECRET = "crash-bench-signing-secret"
AGENTS = 4
MARKER = re.compile(r"crash message (\d{6})")
QUIET_SECONDS = 3.0  # after the last message arrived: repeats still on their way land
STOP_SECONDS = 30.0

CONFIG = """
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 6
  kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{prefix}router"}}
store:
  url: "{store}"
blobs: {{path: "{tmp}/blobs"}}
logging: {{format: json}}
channels:
  - name: chat  # the customers' messages are produced onto omni.inbound directly
    type: webchat
    enabled: false
  - name: hooks
    type: webhook
    webhook: {{secret: "${{HOOK_SECRET}}"}}
agents:
{agents}
routing:
  assignment_timeout: 24h
sla:
  first_response:
    webchat: {{normal: 24h, high: 24h, urgent: 24h}}
"""

AGENT = """\
  - id: a{i}
    name: Agent {i}
    capacity: {{webchat: 1000000}}
    sink: {{type: webhook, channel: hooks, url: "${{TOOL_A{i}}}"}}"""


def daemon_config(prefix: str, bootstrap: str, store: str, tmp: Path) -> str:
    """The daemon's config: topics under `prefix`, the store at `store`, state in `tmp`."""
    agents = "\n".join(AGENT.format(i=i) for i in range(AGENTS))
    return CONFIG.format(prefix=prefix, bootstrap=bootstrap, store=store, tmp=tmp, agents=agents)


class Failed(RuntimeError):
    """The run could not go on (the daemon died, a wait ran out)."""


# --- the agents' tool ----------------------------------------------------------------------


@dataclass
class Tool:
    """Every agent's tool: answers 200 and keeps what it was sent."""

    latency: float
    port: int = 0
    posts: int = 0
    per_id: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    messages: set[int] = field(default_factory=set)
    last_post: float = field(default_factory=time.monotonic)

    def url(self, agent: int) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/a{agent}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.latency:
            await asyncio.sleep(self.latency)
        delivery = orjson.loads(body)
        self.posts += 1
        self.last_post = time.monotonic()
        self.per_id[request.headers["X-Omnirouter-Id"]] += 1
        self.events[str(delivery.get("event"))] += 1
        for line in (delivery.get("context") or {}).get("transcript") or []:
            found = MARKER.search(line.get("text") or "")
            if found:
                self.messages.add(int(found.group(1)))
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def serving(tool: Tool) -> Any:
    app = web.Application()
    app.router.add_post("/hooks/{agent}", tool.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    tool.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", tool.port).start()
    try:
        yield tool
    finally:
        await runner.cleanup()


# --- the daemon ----------------------------------------------------------------------------


class Daemon:
    """The daemon in its own process, started again after each kill (one log per run)."""

    def __init__(self, config: Path, tmp: Path, env: dict[str, str]) -> None:
        self.config = config
        self.tmp = tmp
        self.env = env
        self.runs = 0
        self.proc: DaemonProcess | None = None
        self.failures = 0  # "component failed" lines over all runs

    def start(self) -> DaemonProcess:
        self.runs += 1
        cwd = self.tmp / f"run-{self.runs:02d}"
        cwd.mkdir()
        self.proc = DaemonProcess(self.config, cwd, env=self.env)
        return self.proc

    def alive(self) -> None:
        """Raise if the daemon exited by itself."""
        proc = self.proc
        if proc is not None and proc.proc.poll() is not None:
            raise Failed(
                f"the daemon exited with {proc.proc.returncode} (run {self.runs}):\n"
                + proc.output()[-3000:]
            )

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await asyncio.to_thread(proc.kill)
            self._count(proc)

    async def stop(self) -> tuple[int, float]:
        proc, self.proc = self.proc, None
        assert proc is not None
        try:
            code, took = await asyncio.to_thread(proc.stop, signal.SIGTERM, STOP_SECONDS)
        finally:
            proc.kill()  # no-op when it exited
            self._count(proc)
        return code, took

    def _count(self, proc: DaemonProcess) -> None:
        self.failures += proc.output().count("component failed")


async def until(check: Callable[[], bool], seconds: float, daemon: Daemon, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        daemon.alive()
        if time.monotonic() > deadline:
            raise Failed(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(0.01)


async def ready(daemon: Daemon, seconds: float = 120.0) -> None:
    proc = daemon.proc
    assert proc is not None
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            daemon.alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    proc.base + "/readyz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise Failed(f"the daemon was not ready within {seconds:.0f} s")
            await asyncio.sleep(0.1)


# --- the customers -------------------------------------------------------------------------


def customer_message(
    run: str, i: int, *, conversation: int | None = None, text: str | None = None
) -> Envelope:
    """Web chat message `i` of `run`, from the visitor of `conversation` (default: its own
    conversation, `i`)."""
    t = i if conversation is None else conversation
    return Envelope(
        id=envelope_id("chat", f"{run}-{i}"),
        kind="message",
        direction="in",
        channel="chat",
        channel_type="webchat",
        thread_key=f"{run}-thread-{t}",
        sender=Sender(address=f"visitor-{run}-{t}", name=f"Visitor {t}"),
        received_at=datetime.now(UTC),
        text=text or f"crash message {i:06d}: my order has not arrived, can you check it?",
    )


async def produce(bootstrap: str, topic: str, run: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for start in range(0, n, 100):
            batch = [customer_message(run, i) for i in range(start, min(n, start + 100))]
            sent = [await producer.send(topic, encode(e), key=e.bus_key()) for e in batch]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def published(bootstrap: str, topic: str) -> Counter[str]:
    """Records per delivery id on the agents' topic, read to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return Counter()
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        ids: Counter[str] = Counter()
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    ids[orjson.loads(record.value or b"{}")["id"]] += 1
        return ids
    finally:
        await consumer.stop()


# --- the run -------------------------------------------------------------------------------


@dataclass
class Outcome:
    messages: int
    kills: int
    runs: int
    seconds: float
    tool: Tool
    records: Counter[str]
    exit_code: int | None
    stop_seconds: float | None
    failures: int

    @property
    def lost(self) -> int:
        return self.messages - len(self.tool.messages)


async def crash_run(args: argparse.Namespace, bootstrap: str, store_url: str, tmp: Path) -> Outcome:
    rng = random.Random(args.seed)
    run = uuid.uuid4().hex[:8]
    prefix = f"crash{run}."
    config = tmp / "channels.yaml"
    config.write_text(daemon_config(prefix, bootstrap, store_url, tmp))
    n = args.messages
    # when to kill: once this many messages have reached the tool (spread over the run)
    marks = sorted(rng.sample(range(n // 20, n * 9 // 10), args.kills))
    started = time.monotonic()
    async with serving(Tool(latency=args.tool_latency)) as tool:
        env = {"HOOK_SECRET": SECRET} | {f"TOOL_A{i}": tool.url(i) for i in range(AGENTS)}
        daemon = Daemon(config, tmp, env)
        producing: asyncio.Task[None] | None = None
        try:
            daemon.start()
            await ready(daemon)  # it created the topics, with their partitions
            producing = asyncio.create_task(produce(bootstrap, f"{prefix}inbound", run, n))
            for k, mark in enumerate(marks, 1):
                before = tool.posts
                await until(
                    lambda m=mark, b=before: len(tool.messages) >= m and tool.posts > b,
                    args.timeout,
                    daemon,
                    f"kill {k}: {mark} messages at the tool",
                )
                await asyncio.sleep(rng.uniform(0, 0.3))
                await daemon.kill()
                print(
                    f"  kill {k:>2}/{len(marks)}: {len(tool.messages):>6,} of {n:,} messages"
                    f" at the tool, {tool.posts:>6,} POSTs",
                    flush=True,
                )
                daemon.start()
            await producing
            await until(
                lambda: len(tool.messages) == n, args.timeout, daemon, "every message at the tool"
            )
            await until(
                lambda: time.monotonic() - tool.last_post > QUIET_SECONDS,
                60,
                daemon,
                "the tool quiet",
            )
            await ready(daemon)  # the stop is timed: not while it is still starting
            code, took = await daemon.stop()
        except Failed as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            code, took = None, None
        finally:
            if producing is not None and not producing.done():
                producing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await producing
            await daemon.kill()
        records = await published(bootstrap, f"{prefix}agent.hooks")
        return Outcome(
            messages=n,
            kills=len(marks),
            runs=daemon.runs,
            seconds=time.monotonic() - started,
            tool=tool,
            records=records,
            exit_code=code,
            stop_seconds=took,
            failures=daemon.failures,
        )


def report(o: Outcome, store: str) -> None:
    per_id = o.tool.per_id
    distinct = len(per_id)
    repeats = o.tool.posts - distinct
    published = sum(o.records.values())
    print(
        f"\nstore {store}: {o.messages:,} messages, {o.kills} SIGKILLs while busy,"
        f" {o.seconds:.0f} s"
    )
    rows = [
        ("deliveries received (POSTs)", f"{o.tool.posts:,}"),
        ("distinct delivery ids", f"{distinct:,}"),
        ("repeats (POSTs beyond one per id)", f"{repeats:,}"),
        ("ids repeated", f"{sum(1 for c in per_id.values() if c > 1):,}"),
        ("most POSTs of one id", f"{max(per_id.values(), default=0)}"),
        ("  published again by the outbox", f"{published - len(o.records):,}"),
        ("  sent again by the outbound loop", f"{o.tool.posts - published:,}"),
        ("lost messages", f"{o.lost:,}"),
        ("events", ", ".join(f"{k} {v:,}" for k, v in sorted(o.tool.events.items()))),
        ("'component failed' log lines", f"{o.failures}"),
        (
            "last stop (SIGTERM)",
            "-" if o.exit_code is None else f"exit {o.exit_code} in {o.stop_seconds:.1f} s",
        ),
    ]
    for name, value in rows:
        print(f"  {name:<36} {value}")


# --- services ------------------------------------------------------------------------------


@contextlib.contextmanager
def store_url(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/store.sqlite3"
        return
    from tests.harness import postgres as pg

    cluster = pg._start_cluster()
    try:
        yield pg._create_database(cluster.url, "omni_crash")
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=1500)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--kafka", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument(
        "--tool-latency", type=float, default=0.0, help="seconds the tool takes per POST"
    )
    p.add_argument("--seed", type=int, default=7, help="for the kill moments")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds any one wait may take")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs)")
    args = p.parse_args(argv)
    if args.messages < 20 or args.kills < 0 or args.kills > args.messages // 4:
        p.error("need --messages >= 20 and 0 <= --kills <= messages / 4")

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every cleanup below

    signal.signal(signal.SIGTERM, interrupted)
    tmp = Path(tempfile.mkdtemp(prefix="omnirouter-crash-"))
    print(
        f"bench/crash.py: {ROOT}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}; temp dir {tmp}",
        flush=True,
    )
    try:
        with broker_at(args.kafka) as bootstrap, store_url(args.store, tmp) as url:
            outcome = asyncio.run(crash_run(args, bootstrap, url, tmp))
        report(outcome, args.store)
        return 0 if outcome.lost == 0 and outcome.exit_code == 0 else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
