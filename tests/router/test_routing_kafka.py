"""End to end on the real Kafka: two router processes, one SIGKILLed mid-stream.

Customer messages are produced to `<prefix>inbound` while two `omnirouter run
--only router` processes share its partitions as one consumer group, with the
store on PostgreSQL. One of them is killed with SIGKILL while it is consuming
and a replacement joins. Afterwards the outputs are read back from Kafka (from
the beginning, with a fresh consumer) and the store is queried: after dedupe by
envelope id, every customer message had exactly one effect, and none is missing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import make_url

from router.envelope import Envelope, Sender, decode, encode, envelope_id
from tests.harness.daemon import DaemonProcess, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

MESSAGES = 300
THREADS = 30
# (channel name, channel type): even threads on email, odd ones on the web chat
CHANNELS = (("mail", "email"), ("chat", "webchat"))
AGENTS = ("ana", "ben")
SINK = "mail"  # both agents are notified by email through the `mail` channel
CONSUMED = "inbound record consumed"
KILL_AFTER = 20  # the victim has consumed at least this many records when it is killed

# The `mail` channel is enabled (its agents are reachable) but never run here; a block of
# the config templates below (braces doubled for str.format), with the env it needs.
MAIL_ENV = {"E2E_MAIL_PASSWORD": "unused"}
MAIL_CHANNEL = """\
  - name: mail
    type: email
    enabled: true  # its agents are reachable; no connector runs here (`--only router`)
    acknowledge: ack
    email:
      imap: {{host: imap.test, username: support@corp.test, password: "${{E2E_MAIL_PASSWORD}}"}}
      smtp:
        host: smtp.test
        username: support@corp.test
        password: "${{E2E_MAIL_PASSWORD}}"
        from_address: support@corp.test
"""
CONFIG = (
    """\
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 4
  kafka:
    bootstrap_servers: "{bootstrap}"
    group_id: "{prefix}router"
store:
  url: "{store}"
logging: {{format: json, level: info}}
channels:
"""
    + MAIL_CHANNEL
    + """\
  - name: chat
    type: webchat
    enabled: false
    acknowledge: ack
    webchat: {{path: /chat}}
agents:
  - id: ana
    name: Ana
    capacity: {{email: 100, webchat: 100}}
    sink: {{type: email, channel: mail, address: ana@corp.test}}
  - id: ben
    name: Ben
    capacity: {{email: 100, webchat: 100}}
    sink: {{type: email, channel: mail, address: ben@corp.test}}
sla:
  warning_template: null
  follow_up_template: null
  follow_up_after: null
  first_response:
    email: {{normal: 24h}}
    webchat: {{normal: 1h}}
templates:
  ack:
    en: "Thanks {{customer_name}}, we will answer {{expected_response}} (ref {{conversation_ref}})."
"""
)


# --- inputs ---------------------------------------------------------------------------


def thread_of(t: int) -> tuple[str, str, str]:
    """(channel, channel type, thread key) of thread number `t`."""
    channel, channel_type = CHANNELS[t % len(CHANNELS)]
    return channel, channel_type, f"<thread-{t}@e2e.test>" if channel_type == "email" else f"s{t}"


def customer_messages(run: str) -> list[Envelope]:
    """MESSAGES envelopes over THREADS threads, interleaved, in order within each thread.

    Some customers write on two threads (10 email addresses for 15 email
    threads, and some chat visitors state one of those addresses in the
    pre-chat form), so the two processes resolve shared customers concurrently.
    """
    start = datetime.now(UTC)
    out = []
    for i in range(MESSAGES):
        t = i % THREADS
        channel, channel_type, thread = thread_of(t)
        native = f"<{run}-{i}@e2e.test>"
        meta: dict[str, Any] = {}
        if channel_type == "email":
            sender = Sender(address=f"cust{t % 10}@e2e.test", name=f"Customer {t % 10}")
            meta = {"message_id": native}
        else:
            sender = Sender(address=f"visitor-{run}-{t}", name=f"Visitor {t}")
            if t % 3 == 0:
                meta = {"form": {"email": f"cust{t % 10}@e2e.test"}}
        out.append(
            Envelope(
                id=envelope_id(channel, native),
                kind="message",
                direction="in",
                channel=channel,
                channel_type=channel_type,
                thread_key=thread,
                sender=sender,
                received_at=start + timedelta(milliseconds=i),
                subject=f"Order {t}",
                text=f"Hello, this is message {i} about my order number {t}. Please help me.",
                meta=meta,
            )
        )
    return out


# --- processes --------------------------------------------------------------------------


def consumed(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The "inbound record consumed" lines of a daemon's log."""
    lines = []
    for line in daemon.output().splitlines():
        if CONSUMED in line:
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return [e for e in lines if e.get("event") == CONSUMED]


def tails(daemons: dict[str, DaemonProcess]) -> str:
    parts = []
    for name, d in daemons.items():
        state = "running" if d.proc.poll() is None else f"exited {d.proc.returncode}"
        parts.append(f"--- router {name} ({state}), last lines of {d.log} ---\n")
        parts.append("\n".join(d.output().splitlines()[-25:]))
    return "\n".join(parts)


def start_router(config: Path, workdir: Path) -> DaemonProcess:
    workdir.mkdir()
    return DaemonProcess(config, workdir, "--only", "router", env=MAIL_ENV)


def ready(name: str, daemon: DaemonProcess, daemons: dict[str, DaemonProcess]) -> None:
    try:
        wait_for(daemon.base + "/readyz", 200, 45)
    except AssertionError as exc:
        raise AssertionError(f"router {name} not ready: {exc}\n{tails(daemons)}") from None


# --- Kafka ------------------------------------------------------------------------------


async def produce(
    bootstrap: str, topic: str, envelopes: list[Envelope], between: Callable[[int], None]
) -> None:
    """Produce in chunks of 10, calling `between(produced so far)` after each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for n in range(0, len(envelopes), 10):
            chunk = envelopes[n : n + 10]
            sent = [await producer.send(topic, encode(e), key=e.bus_key()) for e in chunk]
            await asyncio.gather(*sent)
            between(n + len(chunk))
            await asyncio.sleep(0.15)
    finally:
        await producer.stop()


async def partitions_of(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [t["topic"] for t in described if t["error_code"] != 0]
    assert not missing, f"topics never created: {missing}"
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def read_all(
    bootstrap: str, topics: list[str]
) -> tuple[dict[str, list[bytes]], dict[str, int]]:
    """Every record of `topics`, from the beginning to the current end; partitions per topic."""
    tps = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"verify-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[str, list[bytes]] = {t: [] for t in topics}
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "reading the output topics took over 30 s"
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, msgs in batches.items():
                out[tp.topic].extend(m.value or b"" for m in msgs if m.offset < end[tp])
        return out, dict(Counter(tp.topic for tp in tps))
    finally:
        await consumer.stop()


# --- the store --------------------------------------------------------------------------


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq(url)) as conn:
        return conn.execute(sql).fetchall()


def wait_until_done(url: str, daemons: dict[str, DaemonProcess], seconds: float) -> float:
    """Until every input is stored and the outbox is empty; return how long it took."""
    start = time.monotonic()
    state: tuple[Any, ...] = ()
    while time.monotonic() - start < seconds:
        state = query(
            url,
            "SELECT (SELECT count(*) FROM messages WHERE direction = 'in'),"
            " (SELECT count(*) FROM outbox WHERE sent_at IS NULL),"
            " (SELECT count(*) FROM outbox)",
        )[0]
        if state[0] == MESSAGES and state[1] == 0:
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(
        f"not done within {seconds}s: (inbound stored, outbox unsent, outbox rows) = {state}\n"
        + tails(daemons)
    )


# --- the test ---------------------------------------------------------------------------


def test_two_routers_one_killed_midstream_lose_and_repeat_nothing(
    kafka_bootstrap: str, fresh_postgres_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    run = uuid.uuid4().hex[:8]
    prefix = f"rk{run}."
    config = tmp_path / "channels.yaml"
    config.write_text(
        CONFIG.format(prefix=prefix, bootstrap=kafka_bootstrap, store=fresh_postgres_url)
    )
    inputs = customer_messages(run)
    by_id = {e.id: e for e in inputs}
    assert len(by_id) == MESSAGES

    daemons: dict[str, DaemonProcess] = {}
    killed: dict[str, int] = {}
    try:
        # The first one migrates the fresh database; the second joins the same group.
        daemons["a"] = start_router(config, tmp_path / "a")
        ready("a", daemons["a"], daemons)
        daemons["b"] = start_router(config, tmp_path / "b")
        ready("b", daemons["b"], daemons)

        def kill_when_consuming(produced: int) -> None:
            if killed:
                return
            a, b = len(consumed(daemons["a"])), len(consumed(daemons["b"]))
            if a >= KILL_AFTER and b >= 1:
                daemons["a"].proc.kill()  # SIGKILL: no shutdown, no commit, no flush
                daemons["a"].proc.wait()
                killed.update(produced=produced, consumed=a)
                daemons["c"] = start_router(config, tmp_path / "c")

        asyncio.run(produce(kafka_bootstrap, f"{prefix}inbound", inputs, kill_when_consuming))
        deadline = time.monotonic() + 30
        while not killed:
            assert time.monotonic() < deadline, (
                f"router a never consumed {KILL_AFTER} records while b consumed some\n"
                + tails(daemons)
            )
            time.sleep(0.1)
            kill_when_consuming(MESSAGES)
        ready("c", daemons["c"], daemons)
        wait_until_done(fresh_postgres_url, daemons, 60)

        # Both original processes consumed: the group really split the partitions.
        per_process = {name: consumed(d) for name, d in daemons.items()}
        for name in ("a", "b"):
            assert per_process[name], f"router {name} consumed nothing\n{tails(daemons)}"
        partitions = {name: {e["partition"] for e in lines} for name, lines in per_process.items()}
        assert partitions["a"] | partitions["b"] | partitions["c"] == {0, 1, 2, 3}
        seen = Counter(e["record_id"] for lines in per_process.values() for e in lines)
        assert set(seen) == set(by_id), "some inputs were never consumed by any router"
        # A record consumed again (its offset was not committed) is recognised as processed.
        applied = Counter(
            e["record_id"] for lines in per_process.values() for e in lines if not e["duplicate"]
        )
        assert all(n == 1 for n in applied.values()), [m for m, n in applied.items() if n > 1]

        topics = [
            f"{prefix}outbound.mail",
            f"{prefix}outbound.chat",
            f"{prefix}agent.{SINK}",
            f"{prefix}dlq",
        ]
        records, agent_partitions = asyncio.run(read_all(kafka_bootstrap, topics))
        assert records[f"{prefix}dlq"] == [], "records were dead-lettered"
        # Every topic, the agents' included, was created by the daemon with the
        # configured partitions (not auto-created by the broker with its defaults).
        assert set(agent_partitions.values()) == {4}, agent_partitions
        outputs = {t: [decode(v) for v in vs] for t, vs in records.items()}

        # Dedupe by envelope id: a republished output carries the same id and the same content.
        def dedupe(envs: list[Envelope]) -> dict[str, Envelope]:
            unique: dict[str, Envelope] = {}
            for e in envs:
                if e.id in unique:
                    assert unique[e.id] == e, f"two different outputs share the id {e.id}"
                unique[e.id] = e
            return unique

        # --- the store: every message once, one conversation per thread, one owner each
        stored = query(
            fresh_postgres_url,
            "SELECT m.id, m.channel, m.thread_key, m.conversation_id, c.channel, c.thread_key"
            " FROM messages m LEFT JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.direction = 'in'",
        )
        assert len(stored) == MESSAGES
        assert {row[0] for row in stored} == set(by_id)
        for mid, channel, thread, conv_id, conv_channel, conv_thread in stored:
            e = by_id[mid]
            assert (channel, thread) == (e.channel, e.thread_key)
            assert conv_id is not None and (conv_channel, conv_thread) == (channel, thread), mid
        convs = {
            (ch, th): (cid, owner, waiting)
            for cid, ch, th, owner, waiting in query(
                fresh_postgres_url,
                "SELECT id, channel, thread_key, owner_agent_id, waiting_since FROM conversations",
            )
        }
        assert set(convs) == {thread_of(t)[::2] for t in range(THREADS)}
        active = query(
            fresh_postgres_url,
            "SELECT conversation_id, count(*), min(agent_id) FROM assignments"
            " WHERE ended_at IS NULL GROUP BY conversation_id",
        )
        assert all(n == 1 for _, n, _ in active), f"conversations with two owners: {active}"
        owner_of = {cid: agent for cid, _, agent in active}
        for cid, owner, _ in convs.values():
            assert owner_of.get(cid) == owner, f"conversation {cid}: owner column and assignment"
        # capacity bookkeeping, shared by both processes, matches the active assignments
        load = {
            (agent, ctype): n
            for agent, ctype, n in query(
                fresh_postgres_url,
                "SELECT agent_id, channel_type, open_count FROM agent_load WHERE open_count > 0",
            )
        }
        owned = query(
            fresh_postgres_url,
            "SELECT a.agent_id, c.channel_type, count(*) FROM assignments a"
            " JOIN conversations c ON c.id = a.conversation_id"
            " WHERE a.ended_at IS NULL GROUP BY a.agent_id, c.channel_type",
        )
        assert load == {(agent, ctype): n for agent, ctype, n in owned}

        # --- acknowledgements: exactly one per new thread, on its own channel and thread
        acks: dict[tuple[str, str], list[Envelope]] = defaultdict(list)
        for channel, _ in CHANNELS:
            raw = outputs[f"{prefix}outbound.{channel}"]
            for e in dedupe(raw).values():
                assert e.channel == channel and e.direction == "out"
                if e.signal == "assigned":  # a live channel told who has it: no message
                    assert e.text == "" and e.sender.role == "agent"
                    assert (e.channel, e.thread_key) in convs
                    continue
                assert e.meta.get("purpose") == "ack", e.meta
                acks[(e.channel, e.thread_key)].append(e)
        assert set(acks) == set(convs), "threads without an acknowledgement"
        twice = {k: [e.id for e in v] for k, v in acks.items() if len(v) != 1}
        assert not twice, f"threads acknowledged more than once: {twice}"
        for key, (cid, _, _) in convs.items():
            assert acks[key][0].conversation_id == cid
        stored_out = query(fresh_postgres_url, "SELECT id FROM messages WHERE direction = 'out'")
        assert sorted(r[0] for r in stored_out) == sorted(v[0].id for v in acks.values())

        # --- agent deliveries: exactly one per input, to the conversation's owner, full context
        raw_deliveries = outputs[f"{prefix}agent.{SINK}"]
        deliveries = dedupe(raw_deliveries)
        thread_inputs: dict[tuple[str, str], list[str]] = defaultdict(list)
        for e in inputs:
            thread_inputs[(e.channel, e.thread_key)].append(e.id)
        delivered: dict[str, list[str]] = defaultdict(list)
        for d in deliveries.values():
            info = d.delivery.model_dump(mode="json")
            context = info["context"]
            # the record that caused a delivery is the newest customer message it shows
            shown = [m["id"] for m in context["transcript"] if m["direction"] == "in"]
            assert shown, f"delivery {d.id} without the customer's message"
            trigger = shown[-1]
            assert trigger in by_id, f"delivery {d.id} shows an unknown message {trigger}"
            key = (by_id[trigger].channel, by_id[trigger].thread_key)
            prefix_ids = thread_inputs[key][: thread_inputs[key].index(trigger) + 1]
            assert shown == prefix_ids, f"delivery {d.id}: transcript is not the thread so far"
            assert d.conversation_id == convs[key][0]
            assert info["agent"]["id"] in AGENTS
            delivered[trigger].append(info["agent"]["id"])
        twice_delivered = {m: a for m, a in delivered.items() if len(a) > 1}
        assert not twice_delivered, f"inputs delivered more than once: {twice_delivered}"
        for key, ids in thread_inputs.items():
            cid, owner, waiting = convs[key]
            for mid in ids:
                if mid in delivered:
                    assert owner is not None and delivered[mid] == [owner], (mid, owner)
                else:
                    assert owner is None and waiting is not None, (
                        f"message {mid} on {key}: not delivered and the conversation is not queued"
                    )
        assert len(delivered) == MESSAGES, "capacity suffices: every message reaches an agent"

        took = time.monotonic() - began
        raw_acks = sum(len(outputs[f"{prefix}outbound.{c}"]) for c, _ in CHANNELS)
        print(
            f"\nrouting e2e: {MESSAGES} inputs over {THREADS} threads in {took:.1f} s;"
            f" router a SIGKILLed after consuming {killed['consumed']}"
            f" (with {killed['produced']} produced);"
            f" consumed a={len(per_process['a'])} b={len(per_process['b'])}"
            f" c={len(per_process['c'])}, redelivered {sum(n - 1 for n in seen.values())};"
            f" outputs raw/unique: acks {raw_acks}"
            f"/{len(acks)}, deliveries {len(raw_deliveries)}/{len(deliveries)};"
            f" partitions {agent_partitions}"
        )
    finally:
        for d in daemons.values():
            d.kill()
