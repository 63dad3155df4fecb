"""Routing: decision speed, end-to-end messages/s through Kafka, memory per open conversation.

    python bench/routing.py [--seconds 2] [--agents 10000] [--conversations 100000]
                            [--messages 400] [--followups 0.5] [--raw-messages 20000]
                            [--memory-conversations 400] [--kafka HOST:PORT]
                            [--postgres URL] [--no-e2e] [--no-postgres] [--no-profile]
                            [--open-loop 50,200,500 | --no-open-loop] [--open-loop-seconds 3]
                            [--open-loop-messages 600] [--open-loop-drain 5]

Four tables, all measured in the same run (the defaults take about 4-5 minutes
on 2 cores, most of it in the end-to-end and open-loop rows):

1. The decision itself (pure functions, no I/O), one call at a time, each call
   timed: `choose_agent` on an `AgentBoard` of `--agents` agents (varied skills, languages,
   channels, per-channel capacities, loads that hold `--conversations` open
   conversations, some agents away or off shift), `classify` on a mixed
   en/es/fr/de/pt/it corpus by 14 rules plus complaint keywords, and the
   queue: a waiting list of `--conversations` entries ordered in Python by
   `queue_key` (the previous design, defined here for comparison) next to the
   clock-free `queue_rank` the router now stores in an indexed column.
   "decision" is classify + choose + queue_rank for one new message. Reference
   rows: the floor of any design that looks at every agent (a bare loop
   reading one attribute of each); the previous design of choose (scan every
   agent, keep the best who fits; checked to pick the same agent as
   `choose_agent` on every need); what keeping the board costs (reading it
   afresh, one load change); and the queue ordered by the clock-free rank
   (checked to give the same order as `queue_key`). Targets: >= 20,000
   decisions/s, p99 <= 2 ms.
2. End to end through a real Kafka broker: `--messages` envelopes
   (`--followups` of them follow-ups on conversations opened earlier in the
   stream) pre-produced to `<prefix>inbound`, then the daemon's router pieces,
   wired as the daemon wires them (`ConsumeLoop` with the batch handler ->
   `InboundProcessor.handle_batch` -> `Engine.handle_batch`, one store
   transaction per run of up to `router.inbound.CHUNK` records, more under a backlog ->
   `OutboxPublisher.flush` on `KafkaBus` once per fetch; JSON logs at INFO to
   /dev/null, as in production) with the store on SQLite and on PostgreSQL.
   8 agents with room for every conversation, so every message is assigned or
   delivered to its owner. Baseline: raw aiokafka pass-through of the same
   records (fetch up to 200, produce each to another topic, gather the acks,
   commit) on the same broker; a second row awaits each produce in turn, as
   the outbox does. Target: >= 30% of the baseline. Per message: wall time in
   the engine (`Engine.handle_batch`, and `Engine.handle` for records handled
   one by one) and `OutboxPublisher.flush`, the event loop thread's CPU
   in them, SQL statements by kind, and the store's floor (an empty
   transaction, one more statement).
3. Open-loop latency: for each rate of `--open-loop` (msg/s), the router's pieces
   wired as in table 2 (fresh topics and store per row) while a separate
   generator process produces customer messages at that fixed rate, scheduled
   by its clock and not waiting on the router, for max(`--open-loop-seconds`,
   `--open-loop-messages`); its own consumer of the agents' topic reads each
   delivery and finds the customer messages it carries (the inbound entries of
   its transcript). Per rate: offered and achieved send rate, p50, p99 and max
   from the produce call to the delivery's arrival, and the messages with no
   delivery `--open-loop-drain` seconds after the last send (they count as the
   slowest). Target: p99 <= 50 ms at 200 msg/s. Floor rows: plain aiokafka in
   place of the router, answering each message with a delivery-shaped record.
4. Memory per open conversation: the store's bytes per conversation (SQLite
   file, per table and index via dbstat; PostgreSQL relation sizes) and the
   router process's RSS and live Python objects per conversation after a
   warm-up (the engine should hold nothing per conversation).

Without `--kafka` a broker is started with tests/harness/kafka.py, and without
`--postgres` a throwaway cluster with tests/harness/postgres.py, durable as the
SQLite store is (fsync, synchronous_commit on); the durability settings the
server reports are printed, with a warning when they are not. cProfile
summaries follow tables 1 and 2 unless `--no-profile`. Nothing is asserted:
the figures are printed next to their targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import logging
import multiprocessing
import os
import pstats
import random
import resource
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from router.bus import KafkaBus  # noqa: E402
from router.bus.base import Record, Topics  # noqa: E402
from router.config import Config, parse_config  # noqa: E402
from router.connector import load_registry  # noqa: E402
from router.consume import ConsumeLoop, Part  # noqa: E402
from router.daemon import settle_heap  # noqa: E402
from router.envelope import Envelope, Sender, encode, envelope_id  # noqa: E402
from router.inbound import BACKLOG_CHUNK, CHUNK, InboundProcessor  # noqa: E402
from router.logs import setup_logging  # noqa: E402
from router.metrics import Metrics  # noqa: E402
from router.outbox import OutboxPublisher  # noqa: E402
from router.routing.board import AgentBoard, order_key  # noqa: E402
from router.routing.choose import (  # noqa: E402
    AgentView,
    Choice,
    Need,
    can_take,
    choose_agent,
    unavailable_because,
    unqualified_because,
)
from router.routing.classify import CustomerFacts, classify  # noqa: E402
from router.routing.engine import Engine  # noqa: E402
from router.routing.language import default_detector  # noqa: E402
from router.routing.queueing import (  # noqa: E402
    PRIORITY_LEVELS,
    effective_priority,
    queue_rank,
)
from router.store import open_store  # noqa: E402

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning
AGING = timedelta(minutes=10)


def queue_key(level: int, since: datetime, now: datetime, step: timedelta) -> tuple[float, float]:
    """The previous design: order the waiting list in Python at every drain (for comparison)."""
    return (-effective_priority(level, since, now, step), since.timestamp())


LANGUAGES = ["de", "en", "es", "fr", "it", "pt"]
SKILLS = [
    "billing",
    "tech",
    "orders",
    "returns",
    "shipping",
    "accounts",
    "fraud",
    "warranty",
    "b2b",
    "vip",
    "hardware",
    "complaints",
]
# channel name -> channel type, as in the config below
CHANNELS = {"mail": "email", "tg": "telegram", "chat": "webchat"}
CAPACITY_RANGES = {"email": (5, 15), "telegram": (2, 6), "webchat": (1, 4), "phone": (1, 1)}
FETCH = 200  # records per fetch, as router.consume.ConsumeLoop


def ms(ns: float) -> float:
    return ns / 1e6


# --- the configuration: channels, rules, templates -----------------------------------------

RULES = """
    - name: billing
      match: {keywords: [invoice, refund, charged twice, factura, reembolso, facture, rechnung]}
      then: {skills: {billing: 2}, queue: billing}
    - name: tech
      match: {keywords: [crash, error, bug, does not start, no funciona, fehler, erreur]}
      then: {skills: {tech: 2}, queue: tech}
    - name: orders
      match: {regex: 'order\\s*#?\\d{5,}|pedido\\s*\\d+|commande\\s*\\d+'}
      then: {skills: {orders: 1}}
    - name: returns
      match: {keywords: [return, devolucion, retour, rucksendung, reso]}
      then: {skills: {returns: 2}}
    - name: shipping
      match: {keywords: [tracking, delivery, envio, livraison, lieferung, spedizione]}
      then: {skills: {shipping: 1}}
    - name: accounts
      match: {keywords: [password, login, account locked, contrasena, mot de passe]}
      then: {skills: {accounts: 2}}
    - name: fraud
      match: {keywords: [fraud, stolen card, unauthorized, fraude]}
      then: {skills: {fraud: 3}, priority: urgent}
      stop: true
    - name: warranty
      match: {keywords: [warranty, garantia, garantie]}
      then: {skills: {warranty: 2}}
    - name: b2b
      match: {regex: '\\b(vat|cif|nif|ust-idnr)\\b'}
      then: {skills: {b2b: 2}}
    - name: vip
      match: {tier: [gold]}
      then: {skills: {vip: 1}, priority: high}
    - name: chat-fast
      match: {channel_type: [webchat]}
      then: {tags: [live]}
    - name: hardware
      match: {keywords: [battery, screen, charger, pantalla, bateria]}
      then: {skills: {hardware: 2}}
    - name: spanish-tag
      match: {language: [es]}
      then: {tags: [es]}
    - name: urgent
      match: {keywords: [urgent, urgente, asap, dringend]}
      then: {priority: high}
"""

CONFIG_HEAD = """
version: 1
bus:
  backend: kafka
  topic_prefix: "{prefix}"
  partitions: 6
  kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"}}
store:
  url: "{store}"
channels:
  - name: mail
    type: email
    enabled: false
    acknowledge: ack
    email:
      imap: {{host: imap.test, username: s@test, password: "${{P}}"}}
      smtp: {{host: smtp.test, username: s@test, password: "${{P}}", from_address: s@corp.test}}
  - name: tg
    type: telegram
    enabled: false
    acknowledge: ack
    telegram: {{bot_token: "${{T}}", mode: polling}}
  - name: chat
    type: webchat
    enabled: false
    acknowledge: ack
    webchat: {{path: /chat}}
skills:
{skills}
queues:
  - name: general
  - name: billing
    skills: {{billing: 1}}
  - name: tech
    skills: {{tech: 1}}
agents:
{agents}
routing:
  default_queue: general
  last_agent_wait: 2m
  aging_step: 10m
  rules:
{rules}
  complaints:
    skill: complaints
    min_level: 3
    keywords:
      en: [unacceptable, complaint, worst service, lawyer]
      es: [inaceptable, queja, reclamacion, denuncia]
sla:
  warning_at: 0.5
  warning_template: on_it
  first_response:
    email: {{normal: 24h, high: 4h, urgent: 1h}}
    telegram: {{normal: 1h, high: 30m, urgent: 15m}}
    webchat: {{normal: 5m, high: 3m, urgent: 2m}}
templates:
  ack:
    en: "Thanks {{customer_name}}, we answer {{expected_response}} (#{{conversation_ref}})."
    es: "Gracias {{customer_name}}, respondemos {{expected_response}} (#{{conversation_ref}})."
  on_it:
    en: "We are on it, {{customer_name}}."
"""


def bench_config(
    *,
    agents: int = 8,
    capacity: int = 1_000_000,
    prefix: str = "bench.",
    bootstrap: str = "127.0.0.1:9",
    group: str = "router",
    store: str = "sqlite:///unused.sqlite3",
) -> Config:
    """A config with every rule skill and `agents` agents that cover all of them."""
    lines = []
    for i in range(agents):
        skills = ", ".join(f"{s}: 5" for s in SKILLS)
        caps = ", ".join(f"{t}: {capacity}" for t in CAPACITY_RANGES)
        lines.append(
            f"  - {{id: a{i}, name: Agent {i}, languages: [en, es, fr, de, pt, it],"
            f" skills: {{{skills}}}, capacity: {{{caps}}},"
            f" sink: {{type: email, channel: mail, address: a{i}@corp.test}}}}"
        )
    text = CONFIG_HEAD.format(
        prefix=prefix,
        bootstrap=bootstrap,
        group=group,
        store=store,
        skills="\n".join(f"  - name: {s}" for s in SKILLS),
        agents="\n".join(lines),
        rules=RULES.strip("\n").replace("\n    ", "\n    "),
    )
    return parse_config(text, env={"P": "x", "T": "123:abc"})


# --- the message corpus --------------------------------------------------------------------

CORPUS: list[tuple[str, str]] = [
    ("Invoice question", "Hello, I was charged twice on my last invoice, can you refund one?"),
    ("Order status", "Hi, where is my order #4829301? The tracking has not moved for days."),
    ("App crash", "The app crashes with an error every time I open the settings page."),
    ("", "hi"),
    ("Return", "I would like to return the shoes I bought last week, they are too small."),
    ("Factura", "Hola, necesito la factura de mi pedido 55123 con el NIF de mi empresa."),
    ("Pedido", "Buenas tardes, mi pedido no ha llegado y el envio dice entregado. Urgente."),
    (
        "Queja formal",
        "Es inaceptable, llevo dos semanas esperando una respuesta. Quiero poner una queja formal.",
    ),
    ("", "La pantalla del movil se ha roto a los tres dias, esta en garantia?"),
    (
        "Commande",
        "Bonjour, ma commande 99812 n'est toujours pas arrivee, pouvez-vous verifier la"
        " livraison ?",
    ),
    ("Facture", "Je n'ai pas recu la facture pour mon dernier achat, merci de me l'envoyer."),
    ("Rechnung", "Guten Tag, ich habe eine falsche Rechnung bekommen und bitte um Korrektur."),
    ("Lieferung", "Meine Lieferung ist beschadigt angekommen, was kann ich tun? Dringend bitte."),
    ("Pedido", "Ola, o meu pedido ainda nao chegou, podem verificar por favor o estado?"),
    ("Ordine", "Buongiorno, vorrei sapere quando arriva la spedizione del mio ordine."),
    ("Password", "I cannot login, my account is locked after too many password attempts."),
    ("Fraud", "There is an unauthorized payment on my account, I think my card was stolen."),
    ("Complaint", "This is the worst service I have ever had. Unacceptable. I will call a lawyer."),
    ("VAT invoice", "Please add our VAT number to the invoice for order 7781234, thanks."),
    ("", "Battery drains in two hours and the charger gets very hot, is it under warranty?"),
    ("Re: your reply", "Thanks, that solved it!"),
    ("", "ok"),
    (
        "Long story",
        "Hello team, I am writing because I have been trying to change the delivery address "
        "for an order I placed yesterday. The website does not let me edit it and the chat "
        "closed before anyone answered. Could someone please help me update it before it "
        "ships? I will be away from the original address for the next two weeks.",
    ),
    ("Hola", "Hola, quisiera saber si hacen envios a Canarias y cuanto tardan."),
]


def corpus_envelopes(n: int, rng: random.Random) -> list[Envelope]:
    out = []
    for i in range(n):
        subject, text = CORPUS[i % len(CORPUS)]
        channel = rng.choice(list(CHANNELS))
        out.append(customer_message(channel, f"c{i}", f"t{i}", f"m{i}", text, subject or None))
    return out


def customer_message(
    channel: str, customer: str, thread: str, native: str, text: str, subject: str | None
) -> Envelope:
    ctype = CHANNELS[channel]
    if ctype == "email":
        address = f"{customer}@shop.test"
    elif ctype == "telegram":
        address = str(100000 + int(customer.lstrip("c")))
    else:
        address = f"visitor-{customer}"
    return Envelope(
        id=envelope_id(channel, native),
        kind="message",
        direction="in",
        channel=channel,
        channel_type=ctype,
        thread_key=thread,
        sender=Sender(address=address, name=f"Customer {customer}"),
        received_at=T0,
        subject=subject if ctype == "email" else None,
        text=text,
        meta={"message_id": native} if ctype == "email" else {},
    )


# --- 1. the decision -----------------------------------------------------------------------


def make_agents(n: int, open_conversations: int, rng: random.Random) -> list[AgentView]:
    """`n` agents whose loads hold `open_conversations` (where capacity allows)."""
    specs = []
    for i in range(n):
        skills = {s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(2, 5))}
        languages = {"en"} if rng.random() < 0.8 else set()
        languages |= set(rng.sample(LANGUAGES, rng.randint(0, 2)))
        languages = languages or {"es"}
        channels = (
            frozenset()
            if rng.random() < 0.6
            else frozenset(rng.sample(list(CHANNELS), rng.randint(1, 2)))
        )
        capacity = {t: rng.randint(lo, hi) for t, (lo, hi) in CAPACITY_RANGES.items()}
        specs.append((f"agent{i:05d}", skills, frozenset(languages), channels, capacity))
    load: list[dict[str, int]] = [dict.fromkeys(CAPACITY_RANGES, 0) for _ in range(n)]
    types = list(CAPACITY_RANGES)
    placed = attempts = 0
    while placed < open_conversations and attempts < open_conversations * 4:
        attempts += 1
        i = rng.randrange(n)
        t = rng.choices(types, weights=(6, 3, 2, 1))[0]
        if load[i][t] < specs[i][4][t]:
            load[i][t] += 1
            placed += 1
    agents = []
    for (aid, skills, langs, chans, cap), ld in zip(specs, load, strict=True):
        r = rng.random()
        agents.append(
            AgentView(
                id=aid,
                skills=skills,
                languages=langs,
                channels=chans,
                capacity=cap,
                load=ld,
                status="available" if r < 0.85 else ("away" if r < 0.95 else "offline"),
                on_shift=rng.random() < 0.9,
                last_assigned_at=T0 - timedelta(seconds=rng.randint(0, 8 * 3600)),
            )
        )
    return agents


def scan_choose(
    agents: Sequence[AgentView], need: Need, last_agent_id: str | None, wait: bool
) -> str | None:
    """The previous design (bench only): look at every agent, keep the best who fits."""
    last = next((a for a in agents if a.id == last_agent_id), None) if last_agent_id else None
    if last is not None and unqualified_because(last, need) is None:
        if unavailable_because(last, need) is None:
            return last.id
        if wait:
            return None
    fits = [a for a in agents if can_take(a, need)]
    return min(fits, key=order_key).id if fits else None


@dataclass
class Timing:
    name: str
    ns: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def per_s(self) -> float:
        return len(self.ns) / (sum(self.ns) / 1e9) if self.ns else 0.0

    def pct(self, q: float) -> float:
        s = sorted(self.ns)
        return ms(s[min(len(s) - 1, int(q * len(s)))]) if s else 0.0

    def row(self) -> str:
        return (
            f"{self.name:<44} {len(self.ns):>7,} {self.per_s:>11,.0f} {self.pct(0.5):>9.3f}"
            f" {self.pct(0.99):>9.3f} {ms(max(self.ns)) if self.ns else 0:>9.3f}  {self.note}"
        )


TIMING_HEADER = (
    f"{'what (one call)':<44} {'calls':>7} {'calls/s':>11} {'p50 ms':>9} {'p99 ms':>9}"
    f" {'max ms':>9}"
)


def timed(name: str, fn: Callable[[Any], object], items: Sequence[Any], seconds: float) -> Timing:
    """Call fn(item) over `items` in a cycle for about `seconds` (at least 20 calls)."""
    t = Timing(name)
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    i = 0
    while clock() < deadline or len(t.ns) < 20:
        item = items[i % len(items)]
        i += 1
        start = clock()
        fn(item)
        t.ns.append(clock() - start)
    return t


@dataclass(frozen=True)
class Case:
    """One new message's decision inputs."""

    envelope: Envelope
    facts: CustomerFacts
    last_agent: str | None
    wait: bool
    need: Need


def make_cases(agents: Sequence[AgentView], n: int, rng: random.Random) -> list[Case]:
    config = bench_config()
    routing = config.routing
    queues = {q.name: q for q in config.queues}
    cases = []
    for env in corpus_envelopes(n, rng):
        facts = CustomerFacts(
            tier=rng.choice([None, None, "silver", "gold"]),
            tags=frozenset(rng.sample(["b2b", "press", "new"], rng.randint(0, 1))),
        )
        result = classify(env, facts, routing, languages=LANGUAGES, now=T0)
        skills = dict(result.skills)
        queue = queues.get(result.queue) if result.queue else None
        for skill, level in queue.skills.items() if queue else ():
            skills[skill] = max(level, skills.get(skill, 0))
        need = Need(
            channel=env.channel,
            channel_type=env.channel_type,
            skills=skills,
            language=result.language,
        )
        last = rng.choice(agents).id if rng.random() < 0.3 else None
        cases.append(Case(env, facts, last, rng.random() < 0.5, need))
    return cases


def _positions(ordered: Sequence[tuple[Any, int]], indexes: Sequence[int]) -> list[int]:
    """For each waiting-list index in `indexes`, its position in `ordered`."""
    where = {i: pos for pos, (_, i) in enumerate(ordered)}
    return [where[i] for i in indexes]


def profile_top(
    fn: Callable[[], object], top: int, title: str, *, ours_by_cumulative: int = 0
) -> None:
    """Print the top entries by own time; then, if asked, our own functions by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = stats.stats.items()  # type: ignore[attr-defined]
    rows = sorted(entries, key=lambda kv: kv[1][2], reverse=True)
    print(f"\n  profile: {title} (cProfile, top {top} by own time; total {total:.3f} s)")
    _profile_rows(rows[:top], total)
    if ours_by_cumulative:
        groups: Counter[str] = Counter()
        for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in entries:
            groups[_group(file, func)] += tt
        print("  ... own time by package (the event loop's thread only):")
        for name, tt in groups.most_common(10):
            print(f"    {tt:>7.3f} {100 * tt / total:>5.1f}%  {name}")
        ours = [kv for kv in entries if f"{os.sep}router{os.sep}" in kv[0][0]]
        ours.sort(key=lambda kv: kv[1][3], reverse=True)
        print(f"  ... router/ functions by cumulative time (top {ours_by_cumulative}):")
        _profile_rows(ours[:ours_by_cumulative], total)


def _group(file: str, func: str) -> str:
    if "epoll" in func:
        return "waiting in epoll (store thread, network, broker)"
    if "site-packages" in file:
        return file.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0].split(".")[0]
    if f"{os.sep}router{os.sep}" in file:
        return "router/ (our code)"
    if file == "~":
        return "C built-ins (sockets, thread queues, dicts...)"
    if Path(file).resolve().parent == _HERE:
        return "bench/ (this script)"
    return "stdlib " + Path(file).stem


def _profile_rows(rows: Sequence[Any], total: float) -> None:
    print(f"    {'own s':>7} {'own %':>6} {'cum s':>7} {'calls':>10}  function")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"    {tt:>7.3f} {100 * tt / total:>5.1f}% {ct:>7.3f} {nc:>10,}  {func} ({where})")


def bench_decisions(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    print(
        f"\n== 1. The decision itself: {args.agents:,} agents, {args.conversations:,} open"
        " conversations (pure functions, one call at a time) =="
    )
    t0 = time.perf_counter()
    agents = make_agents(args.agents, args.conversations, rng)
    cases = make_cases(agents, 600, rng)
    default_detector()  # built once per process, as in the daemon
    board = AgentBoard(agents)  # the router's in-process agent state
    held = sum(sum(a.load.values()) for a in agents)
    free = sum(1 for a in agents if a.status == "available" and a.on_shift)
    print(
        f"setup {time.perf_counter() - t0:.1f} s: loads hold {held:,} open conversations;"
        f" {free:,} agents available and on shift; {len(cases)} messages"
        f" ({len(CORPUS)} texts in 6 languages, 3 channel types)"
    )
    routing = bench_config().routing
    # the waiting list: `conversations` entries, priorities and ages spread out
    waiting = [
        (
            rng.choices(range(4), weights=(2, 6, 2, 1))[0],
            T0 - timedelta(seconds=rng.randint(0, 6 * 3600)),
        )
        for _ in range(args.conversations)
    ]
    now = T0

    def choose(c: Case) -> Choice:
        return choose_agent(board, c.need, last_agent_id=c.last_agent, wait_for_last_agent=c.wait)

    def classify_one(c: Case) -> object:
        return classify(c.envelope, c.facts, routing, languages=LANGUAGES, now=now)

    detector = default_detector()

    def detect(c: Case) -> object:
        return detector.detect(
            "\n".join(p for p in (c.envelope.subject, c.envelope.text) if p), LANGUAGES
        )

    def decision(c: Case) -> object:
        result = classify(c.envelope, c.facts, routing, languages=LANGUAGES, now=now)
        choice = choose(c)
        return choice, queue_rank(PRIORITY_LEVELS[result.priority], now, AGING)

    def key_one(w: tuple[int, datetime]) -> object:
        return queue_key(w[0], w[1], now, AGING)

    def order_all(_: object) -> object:
        return sorted(waiting, key=lambda w: queue_key(w[0], w[1], now, AGING))

    def head_of_all(_: object) -> object:
        return min(waiting, key=lambda w: queue_key(w[0], w[1], now, AGING))

    drain_scan = waiting[:500]
    step_s = AGING.total_seconds()
    # Equivalent to queue_key for everyone already waiting, and independent of `now`:
    # -(level + (now - since)/step) orders like since/step - level. Storable and indexable.
    static = sorted(
        ((w[1].timestamp() - w[0] * step_s, w[1].timestamp()), i) for i, w in enumerate(waiting)
    )
    by_queue_key = sorted(range(len(waiting)), key=lambda i: key_one(waiting[i]))
    same_priority = [static[j][0][0] for j in _positions(static, by_queue_key)] == [
        k[0] for k, _ in static
    ]
    ties = sum(1 for (_, i), j in zip(static, by_queue_key, strict=True) if i != j)

    def order_static(_: object) -> object:
        return sorted(static)

    def order_drain(_: object) -> object:  # what Engine._drain sorts per pass (DRAIN_SCAN)
        return sorted(drain_scan, key=lambda w: queue_key(w[0], w[1], now, AGING))

    def scan_floor(_: object) -> object:
        return sum(1 for a in agents if a.status == "available")

    def scanned(c: Case) -> object:
        return scan_choose(agents, c.need, c.last_agent, c.wait)

    same = sum(
        1 for c in cases if scan_choose(agents, c.need, c.last_agent, c.wait) == choose(c).agent_id
    )

    def rebuild(_: object) -> object:
        return AgentBoard(agents)

    changed = [(a.id, t) for a in agents[:2000] for t in a.capacity if a.capacity[t] > 0]

    def one_change(item: tuple[str, str]) -> object:
        board.add_load(item[0], item[1], 1)
        board.add_load(item[0], item[1], -1)  # back: the board stays as measured
        return None

    s = args.seconds
    rows = [
        timed(f"choose_agent ({args.agents:,} agents)", choose, cases, s),
        timed("classify (14 rules, complaints, language)", classify_one, cases, s),
        timed("  of which language detection", detect, cases, s / 2),
        timed("queue_key (one waiting conversation)", key_one, waiting, s / 2),
        timed("decision = classify + choose + queue_rank", decision, cases, s),
    ]
    rows[0].note = "target >= 20,000/s, p99 <= 2 ms"
    rows[4].note = "target >= 20,000/s, p99 <= 2 ms"
    print(TIMING_HEADER)
    for r in rows:
        print(r.row())
    print("queue ordering over the waiting list:")
    for r in (
        timed(f"  sort {args.conversations:,} waiting by queue_key", order_all, [0], s / 2),
        timed(f"  head of {args.conversations:,} waiting (min)", head_of_all, [0], s / 2),
        timed("  sort 500 waiting (Engine._drain's DRAIN_SCAN)", order_drain, [0], s / 4),
    ):
        print(r.row())
    what_if = timed(
        f"  queue_rank: {args.conversations:,} by since - level*step", order_static, [0], s / 2
    )
    what_if.note = (
        f"same effective-priority order as queue_key: {same_priority}; {ties:,} places differ"
        " only inside exact ties, which queue_key's float rounding orders instead of by wait"
    )
    print(what_if.row())
    print("reference rows (same run, same agents and needs):")
    floor = timed(f"  floor: bare loop over {args.agents:,} agents", scan_floor, [0], s / 2)
    floor.note = "any design that looks at every agent"
    previous = timed("  previous design: scan every agent", scanned, cases, s)
    previous.note = f"same agent as choose_agent for {same}/{len(cases)} needs"
    build = timed(f"  AgentBoard read afresh ({args.agents:,} views)", rebuild, [0], s / 2)
    build.note = "once a second (routing.board.REFRESH), plus after a failed unit of work"
    change = timed("  one load change on the board, and back", one_change, changed, s / 2)
    change.note = "per assignment or release"
    for r in (floor, previous, build, change):
        print(r.row())
    if args.profile:
        profile_top(lambda: [choose(c) for c in cases[:40]], 10, "choose_agent x 40")
        profile_top(lambda: [classify_one(c) for c in cases], 14, f"classify x {len(cases)}")


# --- 2. end to end through Kafka ------------------------------------------------------------


def traffic(n: int, followups: float, rng: random.Random) -> tuple[list[Envelope], int]:
    """`n` customer messages: new conversations, and follow-ups on ones opened before them."""
    n_new = max(1, round(n * (1 - followups)))
    new_at = {0, *rng.sample(range(1, n), n_new - 1)} if n > 1 else {0}
    convs: list[Thread] = []
    out = []
    for i in range(n):
        if i in new_at:
            thread, first = opening(len(convs), i)
            convs.append(thread)
            out.append(first)
        else:
            out.append(follow_up(rng.choice(convs), i))
    return out, len(convs)


# A conversation of the traffic: its channel, customer, thread and subject.
Thread = tuple[str, str, str, str]


def opening(k: int, i: int) -> tuple[Thread, Envelope]:
    """The `k`-th conversation of the traffic, and its first message (the `i`-th)."""
    subject, text = CORPUS[k % len(CORPUS)]
    channel = list(CHANNELS)[k % len(CHANNELS)]
    thread = (channel, f"c{k}", f"t{k}", subject)
    return thread, customer_message(channel, f"c{k}", f"t{k}", f"m{i}", text, subject or None)


def follow_up(thread: Thread, i: int) -> Envelope:
    """A customer's follow-up (the `i`-th message) on a conversation opened before it."""
    channel, cust, key, subject = thread
    text = f"Any news? I am still waiting (message {i})."
    return customer_message(channel, cust, key, f"m{i}", text, subject or None)


@contextlib.contextmanager
def leader_elections_quiet(logger: str) -> Iterator[None]:
    """A fresh topic's first sends and offset lookups can meet its leader election:
    aiokafka retries them, logging each retry as a warning or an error."""
    log = logging.getLogger(logger)
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = False


async def produce_all(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        with leader_elections_quiet("aiokafka.producer.sender"):
            for start in range(0, len(records), 1000):
                batch = records[start : start + 1000]
                futs = [await producer.send(topic, v, key=k) for k, v in batch]
                await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def topic_count(bootstrap: str, topics: Sequence[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or await _partitions(consumer, t))
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


@dataclass
class E2E:
    name: str
    n: int
    seconds: float
    detail: str = ""
    split: dict[str, float] = field(default_factory=dict)  # seconds per part
    shapes: dict[str, float] = field(default_factory=dict)  # SQL statements per message, by kind

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0


def passthrough_clients(
    bootstrap: str, topic: str, group: str
) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    """The pass-through floors' clients: a consumer of `topic` from its start (a group of
    its own, commits by hand) and a producer as the router's (idempotent, acks=all)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{group}-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    return consumer, producer


async def raw_passthrough(
    bootstrap: str, records: Sequence[tuple[bytes, bytes]], *, sequential: bool
) -> E2E:
    """Consume, produce each record to another topic, commit: plain aiokafka."""
    src, dst = f"bench.raw.{uuid.uuid4().hex[:8]}", f"bench.rawout.{uuid.uuid4().hex[:8]}"
    async with KafkaBus(bootstrap, partitions=6) as admin:
        await admin.ensure_topics([src, dst])
    await produce_all(bootstrap, src, records)
    consumer, producer = passthrough_clients(bootstrap, src, "raw")
    await consumer.start()
    await producer.start()
    got = 0
    first = None
    try:
        while got < len(records):
            batches = await consumer.getmany(timeout_ms=500, max_records=FETCH)
            msgs = [m for ms_ in batches.values() for m in ms_]
            if not msgs:
                continue
            first = first or time.perf_counter()
            if sequential:
                for m in msgs:
                    await producer.send_and_wait(dst, m.value, key=m.key)
            else:
                futs = [await producer.send(dst, m.value, key=m.key) for m in msgs]
                await asyncio.gather(*futs)
            await consumer.commit()
            got += len(msgs)
        took = time.perf_counter() - (first or time.perf_counter())
    finally:
        await producer.stop()
        await consumer.stop()
    how = "send_and_wait each" if sequential else "send all, gather acks"
    return E2E(f"aiokafka pass-through ({how})", got, took, f"fetch {FETCH}, commit per batch")


def statement_shape(sql: str) -> str:
    """`SELECT conversations`, `UPDATE agent_load`...: the verb and the first table named."""
    words = sql.replace('"', " ").replace("(", " ").split()
    verb = words[0].upper() if words else "?"
    for marker in ("FROM", "INTO", "UPDATE"):
        upper = [w.upper() for w in words]
        if marker in upper[:-1] and (marker != "UPDATE" or verb == "UPDATE"):
            return f"{verb} {words[upper.index(marker) + 1]}"
    return verb


async def store_floor(url: str) -> str:
    """What one unit of work costs before any routing: an empty transaction, one statement."""
    store = await open_store(url)
    try:
        n = 300
        t0 = time.perf_counter()
        for _ in range(n):
            async with store.transaction() as conn:
                await conn.execute(sa.text("SELECT 1"))
        txn = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        async with store.transaction() as conn:
            for _ in range(n):
                await conn.execute(sa.text("SELECT 1"))
        one = (time.perf_counter() - t0) / n
    finally:
        await store.close()
    return (
        f"write transaction with one SELECT 1: {1000 * txn:.2f} ms;"
        f" one more SELECT 1 inside a transaction: {1000 * one:.2f} ms"
    )


class _Timer:
    """Wraps async methods of one object, adding up the seconds spent in them."""

    def __init__(self, obj: object, *names: str) -> None:
        self.seconds = 0.0
        for name in names:
            setattr(obj, name, self._wrap(getattr(obj, name)))

    def _wrap(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return await inner(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - start

        return wrapper


def threads_cpu() -> dict[str, float]:
    """CPU seconds each thread of this process has used so far: the store's writer thread,
    the event loop's (this one), and the others together (aiosqlite's readers, ...)."""
    used = {"store": 0.0, "loop": 0.0, "other": 0.0}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ValueError):  # it ended meanwhile
            continue
        if thread is threading.current_thread():
            used["loop"] += seconds
        elif thread.name.startswith("omnirouter-store"):
            used["store"] += seconds
        else:
            used["other"] += seconds
    return used


def cpu_note(start: dict[str, float], end: dict[str, float], messages: int) -> str:
    """Each thread's CPU per message. Python runs one thread at a time (the GIL), so their
    sum bounds the rate this process can reach, however many cores it has."""
    per = {k: 1000 * (end[k] - start.get(k, 0.0)) / max(messages, 1) for k in end}
    total = sum(per.values())
    ceiling = 1000 / total if total else 0.0
    return (
        f"CPU ms/msg: store thread {per['store']:.2f}, event loop {per['loop']:.2f},"
        f" other threads {per['other']:.2f} (one at a time: at most {ceiling:,.0f} msg/s)"
    )


async def router_e2e(
    bootstrap: str, store_url: str, envelopes: Sequence[Envelope], label: str, limit_s: float
) -> tuple[E2E, dict[str, int], int]:
    """The router's pieces on KafkaBus, consuming pre-produced envelopes until all are handled."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    config = bench_config(prefix=prefix, bootstrap=bootstrap, group=f"router-{prefix}")
    topics = Topics(prefix=prefix)
    outputs = [topics.outbound(c) for c in CHANNELS] + [topics.agent("mail")]
    store = await open_store(store_url)
    bus = KafkaBus(bootstrap, partitions=6)
    await bus.start()
    try:
        await bus.ensure_topics([topics.inbound, topics.dlq, *outputs])
        await produce_all(bootstrap, topics.inbound, [(e.bus_key(), encode(e)) for e in envelopes])
        metrics = Metrics()
        # No connector runs here, so the agents' sink channel counts as unreachable and every
        # conversation would only queue: route as `simulate` does, to measure assignment.
        engine = Engine(config, store, topics, reachability=False)
        await engine.start(datetime.now(UTC))
        outbox = OutboxPublisher(store, bus, topics)
        processor = InboundProcessor(
            bus=bus, topics=topics, engine=engine, outbox=outbox, metrics=metrics
        )
        in_engine = _Timer(engine, "handle_batch", "handle")
        in_outbox = _Timer(outbox, "flush")
        statements: Counter[str] = Counter()  # shaped after the run: counting costs little

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements[statement] += 1

        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
        sa.event.listen(store.writer, "before_cursor_execute", count)  # the routing's units
        done = asyncio.Event()
        seen = 0
        first = last = 0.0
        cpu_first: dict[str, float] = {}
        cpu_last: dict[str, float] = {}

        async def handle_batch(records: Sequence[Record]) -> AsyncGenerator[Part, None]:
            nonlocal seen, first, cpu_first
            if not first:
                first, cpu_first = time.perf_counter(), threads_cpu()
            async with contextlib.aclosing(processor.handle_batch(records)) as parts:
                async for part in parts:
                    yield part
                    seen += len(part[0])  # applied, or handled one by one by the loop meanwhile

        async def after_batch() -> None:
            # The daemon publishes the outbox once per fetched batch, before the commit.
            nonlocal last, cpu_last
            await processor.after_batch()
            last, cpu_last = time.perf_counter(), threads_cpu()
            if seen >= len(envelopes):
                done.set()

        loop = ConsumeLoop(
            bus=bus,
            topics=topics,
            group=config.bus.kafka.group_id,
            subscribe=[topics.inbound],
            handler=processor.handle,
            metrics=metrics,
            after_batch=after_batch,
            handle_batch=handle_batch,
        )
        settle_heap()  # as the daemon does once ready
        task = asyncio.create_task(loop.run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), limit_s)
        loop.stop()
        await task
        took = last - first
        actions = {
            s.labels["action"]: int(s.value)
            for m in metrics.decisions.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
        out = await topic_count(bootstrap, outputs)
        other = took - in_engine.seconds - in_outbox.seconds
        split = {"engine": in_engine.seconds, "outbox": in_outbox.seconds, "other": other}
        note = f"{statements.total() / max(seen, 1):.1f} SQL statements/msg; " + cpu_note(
            cpu_first, cpu_last or cpu_first, seen
        )
        if seen < len(envelopes):
            note += f" (timed out after {seen:,})"
        row = E2E(label, seen, took, note, split)
        shapes: Counter[str] = Counter()
        for statement, times in statements.items():
            shapes[statement_shape(statement)] += times
        row.shapes = {k: v / max(seen, 1) for k, v in shapes.most_common(8)}
        return row, actions, out
    finally:
        await bus.stop()
        await store.close()


def e2e_table(rows: Sequence[E2E], baseline: E2E) -> None:
    print(
        f"{'pipeline':<52} {'msgs':>6} {'msgs/s':>9} {'% base':>7} {'engine':>8}"
        f" {'outbox':>8} {'other':>8}   (ms per message)"
    )
    for r in rows:
        pct = 100 * r.rate / baseline.rate if baseline.rate else 0.0
        parts = "".join(
            f" {1000 * r.split[k] / r.n:>8.2f}" if r.split and r.n else f" {'-':>8}"
            for k in ("engine", "outbox", "other")
        )
        print(f"{r.name:<52} {r.n:>6,} {r.rate:>9,.0f} {pct:>6.1f}%{parts}   {r.detail}")


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.harness import postgres as pg

    # fsync and synchronous_commit on: every commit reaches the disk, as SQLite's FULL
    cluster = pg._start_cluster(durable=True)
    try:
        yield cluster.url
    finally:
        cluster.stop()


# What each setting must read for a commit to be on disk when it returns, as the SQLite
# store's synchronous=FULL (synchronous_commit's other durable values differ only for replicas).
DURABLE = {
    "fsync": {"on"},
    "synchronous_commit": {"on", "local", "remote_write", "remote_apply"},
    "full_page_writes": {"on"},
}


def postgres_durability(server: str) -> str:
    """The server's durability settings as it reports them, with a warning when the
    PostgreSQL rows are not comparable with SQLite's."""
    import psycopg

    from tests.harness import postgres as pg

    with psycopg.connect(pg._libpq(server), connect_timeout=10) as conn:
        got = {}
        for name in DURABLE:
            row = conn.execute(f"SHOW {name}").fetchone()
            got[name] = str(row[0]) if row else "?"
    text = ", ".join(f"{k}={v}" for k, v in got.items())
    weak = [k for k, ok in DURABLE.items() if got[k] not in ok]
    if weak:
        text += (
            f"  WARNING: not durable ({', '.join(weak)}): a commit may return before it is on"
            " disk, so the PostgreSQL rows are not comparable with SQLite (synchronous=FULL)"
        )
    return text


@contextlib.contextmanager
def postgres_database(server: str, prefix: str) -> Iterator[str]:
    from tests.harness import postgres as pg

    url = pg._create_database(server, prefix)
    try:
        yield url
    finally:
        pg._drop_database(server, url)


_DEVNULL: list[Any] = []  # the log stream, kept open for the life of the process


def quiet_logs() -> None:
    """The daemon's logging (JSON, INFO, redaction) written to /dev/null: its cost, not its text."""
    _DEVNULL.append(open(os.devnull, "w"))
    setup_logging(level="info", fmt="json", stream=_DEVNULL[0])


async def bench_e2e(args: argparse.Namespace, bootstrap: str, pg_server: str | None) -> None:
    rng = random.Random(11)
    envelopes, n_new = traffic(args.messages, args.followups, rng)
    n = len(envelopes)
    print(
        f"\n== 2. End to end through Kafka ({bootstrap}): {n:,} customer messages, {n_new:,}"
        f" new conversations + {n - n_new:,} follow-ups on them =="
    )
    print(
        "router: ConsumeLoop -> InboundProcessor.handle_batch -> Engine.handle_batch (one store"
        f" transaction per {CHUNK} records, {BACKLOG_CHUNK} under a backlog, in the store's"
        " thread) -> OutboxPublisher.publish"
        " (from memory, while the next runs) -> OutboxPublisher.flush (once per fetch);"
        " 8 agents with room for every conversation; JSON logs at INFO to /dev/null"
    )
    if pg_server:
        print(f"durability: SQLite synchronous=FULL; PostgreSQL {args.pg_durability}")
    # One ack per new conversation, one agent delivery per message, and on channel types
    # with live signals (web chat) the "assigned" signal when a new conversation is assigned.
    live = {c for c, t in CHANNELS.items() if load_registry()[t].live_signals}
    firsts = {e.thread_key: e.channel for e in reversed(envelopes)}
    expected_out = n_new + n + sum(1 for channel in firsts.values() if channel in live)
    raw_records = [(e.bus_key(), encode(e)) for e in envelopes]
    raw_n = max(args.raw_messages, n)
    raw_records = (raw_records * (raw_n // n + 1))[:raw_n]
    baseline = await raw_passthrough(bootstrap, raw_records, sequential=False)
    raw_seq = await raw_passthrough(bootstrap, raw_records[: min(raw_n, 2000)], sequential=True)
    rows = [baseline, raw_seq]
    checks = []
    with tempfile.TemporaryDirectory(prefix="omnirouter-bench-") as tmp:
        stores = [("SQLite", f"sqlite:///{tmp}/store.sqlite3")]
        pg_db: contextlib.AbstractContextManager[str] = contextlib.nullcontext("")
        if pg_server:
            pg_db = postgres_database(pg_server, "omni_bench")
        with pg_db as pg_url:
            if pg_url:
                stores.append(("PostgreSQL", pg_url))
            for label, url in stores:
                row, actions, out = await router_e2e(
                    bootstrap, url, envelopes, f"router, store on {label}", args.e2e_timeout
                )
                rows.append(row)
                checks.append(
                    f"{label}: decisions {dict(sorted(actions.items()))};"
                    f" records on output topics {out:,} (expected {expected_out:,})"
                )
                checks.append(
                    f"{label}: SQL statements per message by kind: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in row.shapes.items())
                )
                checks.append(
                    f"{label}: store floor (same store, no routing): {await store_floor(url)}"
                )
        print(f"baseline: {baseline.name}, {baseline.n:,} records")
        e2e_table(rows, baseline)
        for line in checks:
            print("  " + line)
        if args.profile:
            sample = envelopes[: min(200, n)]
            url = f"sqlite:///{tmp}/profiled.sqlite3"

            def run_profiled() -> None:
                asyncio.run(router_e2e(bootstrap, url, sample, "profiled", args.e2e_timeout))

            await asyncio.to_thread(
                profile_top,
                run_profiled,
                10,
                f"router end to end, SQLite, {len(sample)} messages (includes consumer start)",
                ours_by_cumulative=10,
            )


# --- 3. open-loop latency --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadParams:
    """What the load generator process sends, where, and how long it waits."""

    bootstrap: str
    inbound: str
    agents_topic: str
    rate: float
    n: int
    warmup: int
    followups: float
    drain_s: float
    seed: int


@dataclass
class LoadResult:
    sent: int = 0
    achieved: float = 0.0  # sends/s over the measured run
    late_ms: float = 0.0  # how far the latest send fell behind its schedule
    latencies_ms: list[float] = field(default_factory=list)  # delivered ones only
    warmup_ok: bool = True


def load_generator(p: LoadParams) -> LoadResult:
    """Entry point of the generator process (its own interpreter: its clock and sends do not
    wait on the router's event loop)."""
    return asyncio.run(_generate(p))


async def _generate(p: LoadParams) -> LoadResult:
    envelopes, _ = traffic(p.warmup + p.n, p.followups, random.Random(p.seed))
    warm, measured = envelopes[: p.warmup], envelopes[p.warmup :]
    arrived: dict[str, float] = {}  # customer message id -> when its delivery was read
    want: set[str] = set()
    complete = asyncio.Event()
    consumer = AIOKafkaConsumer(bootstrap_servers=p.bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(
        bootstrap_servers=p.bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    await consumer.start()
    await producer.start()

    async def read() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    # A delivery names the customer messages it carries in its transcript
                    # (router.routing.delivery: entry id = the stored message's envelope id).
                    # orjson, not envelope.decode: validation would take CPU from the router.
                    delivery = orjson.loads(r.value).get("delivery") or {}
                    for entry in (delivery.get("context") or {}).get("transcript", ()):
                        if entry.get("direction") == "in":
                            arrived.setdefault(entry["id"], now)
            if want and want.issubset(arrived):
                complete.set()

    async def expect(ids: set[str], bound: float) -> bool:
        want.clear()
        want.update(ids)
        complete.clear()
        if want.issubset(arrived):
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), bound)
        return complete.is_set()

    async def send(env: Envelope) -> asyncio.Future[Any]:
        value = encode(env.model_copy(update={"received_at": datetime.now(UTC)}))
        fut: asyncio.Future[Any] = await producer.send(p.inbound, value, key=env.bus_key())
        return fut

    reader = None
    try:
        tps = [
            TopicPartition(p.agents_topic, i) for i in await _partitions(consumer, p.agents_topic)
        ]
        consumer.assign(tps)
        with leader_elections_quiet("aiokafka.consumer.fetcher"):
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolved before the first send: nothing is missed
        reader = asyncio.create_task(read())
        result = LoadResult()
        # Warm-up, not measured: the router's consumer joins its group, caches fill.
        with leader_elections_quiet("aiokafka.producer.sender"):
            await asyncio.gather(*[await send(e) for e in warm])
        result.warmup_ok = await expect({e.id for e in warm}, 30.0)
        sent: dict[str, float] = {}
        acks = []
        start = time.perf_counter()
        for i, env in enumerate(measured):
            due = start + i / p.rate  # the clock sets the pace, not the router
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sent[env.id] = time.perf_counter()
            result.late_ms = max(result.late_ms, 1000 * (sent[env.id] - due))
            acks.append(await send(env))
        last = time.perf_counter()
        await asyncio.gather(*acks)
        result.sent = len(measured)
        result.achieved = (len(measured) - 1) / (last - start) if last > start else 0.0
        await expect(set(sent), max(0.0, last + p.drain_s - time.perf_counter()))
        result.latencies_ms = [1000 * (arrived[i] - t) for i, t in sent.items() if i in arrived]
        return result
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await producer.stop()
        await consumer.stop()


def load_params(
    args: argparse.Namespace, bootstrap: str, topics: Topics, rate: float
) -> LoadParams:
    return LoadParams(
        bootstrap=bootstrap,
        inbound=topics.inbound,
        agents_topic=topics.agent("mail"),
        rate=rate,
        n=max(args.open_loop_messages, round(args.open_loop_seconds * rate)),
        warmup=20,
        followups=args.followups,
        drain_s=args.open_loop_drain,
        seed=int(rate),
    )


async def echo_step(
    pool: ProcessPoolExecutor, bootstrap: str, rate: float, args: argparse.Namespace
) -> LoadResult:
    """The floor of the measurement: plain aiokafka in place of the router, answering each
    message with a record shaped like a delivery that carries it (fetch, produce, gather
    the acks, commit, as the pass-through baseline of table 2)."""
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    async with KafkaBus(bootstrap, partitions=6) as admin:
        await admin.ensure_topics([topics.inbound, topics.agent("mail")])
    consumer, producer = passthrough_clients(bootstrap, topics.inbound, "echo")
    await consumer.start()
    await producer.start()

    async def echo() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=FETCH)
            futs = []
            for records in batches.values():
                for r in records:
                    entry = {"id": orjson.loads(r.value)["id"], "direction": "in"}
                    value = orjson.dumps({"delivery": {"context": {"transcript": [entry]}}})
                    futs.append(await producer.send(topics.agent("mail"), value, key=r.key))
            if futs:
                await asyncio.gather(*futs)
                await consumer.commit()

    task = asyncio.create_task(echo())
    try:
        params = load_params(args, bootstrap, topics, rate)
        return await asyncio.get_running_loop().run_in_executor(pool, load_generator, params)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await consumer.stop()


async def open_loop_step(
    pool: ProcessPoolExecutor, bootstrap: str, store_url: str, rate: float, args: argparse.Namespace
) -> LoadResult:
    """The router's pieces, wired as in section 2, on fresh topics and a fresh store, while
    the generator process offers messages at `rate`."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    config = bench_config(prefix=prefix, bootstrap=bootstrap, group=f"router-{prefix}")
    topics = Topics(prefix=prefix)
    outputs = [topics.outbound(c) for c in CHANNELS] + [topics.agent("mail")]
    store = await open_store(store_url)
    bus = KafkaBus(bootstrap, partitions=6)
    await bus.start()
    try:
        await bus.ensure_topics([topics.inbound, topics.dlq, *outputs])
        metrics = Metrics()
        engine = Engine(config, store, topics, reachability=False)  # as in section 2
        await engine.start(datetime.now(UTC))
        outbox = OutboxPublisher(store, bus, topics)
        processor = InboundProcessor(
            bus=bus, topics=topics, engine=engine, outbox=outbox, metrics=metrics
        )
        loop = ConsumeLoop(
            bus=bus,
            topics=topics,
            group=config.bus.kafka.group_id,
            subscribe=[topics.inbound],
            handler=processor.handle,
            metrics=metrics,
            after_batch=processor.after_batch,
            handle_batch=processor.handle_batch,
        )
        settle_heap()  # as the daemon does once ready
        task = asyncio.create_task(loop.run())
        try:
            params = load_params(args, bootstrap, topics, rate)
            return await asyncio.get_running_loop().run_in_executor(pool, load_generator, params)
        finally:
            loop.stop()
            await task
    finally:
        await bus.stop()
        await store.close()


def latency_row(label: str, rate: float, r: LoadResult) -> str:
    s = sorted(r.latencies_ms)
    missing = r.sent - len(s)

    def pct(q: float) -> str:
        k = min(r.sent - 1, int(q * r.sent))
        if k < 0:
            return f"{'-':>8}"
        return f"{s[k]:>8,.0f}" if k < len(s) else f"{'>bound':>8}"  # undelivered: the slowest

    worst = f"{s[-1]:>8,.0f}" if s and not missing else f"{'>bound':>8}"
    note = "" if r.warmup_ok else "  (warm-up deliveries missing after 30 s)"
    if r.late_ms > 100:
        note += f"  (a send fell {r.late_ms:,.0f} ms behind its schedule)"
    return (
        f"{label:<12} {rate:>8,.0f} {r.achieved:>9,.0f} {r.sent:>6,} {pct(0.5)} {pct(0.99)}"
        f" {worst} {missing:>7,}{note}"
    )


async def bench_open_loop(args: argparse.Namespace, bootstrap: str, pg_server: str | None) -> None:
    rates = [float(x) for x in args.open_loop.split(",") if x.strip()]
    print(
        "\n== 3. Open-loop latency: customer messages offered at a fixed rate, produce ->"
        " agent delivery read by a separate consumer =="
    )
    print(
        f"router pieces as in section 2 (fresh topics and store per row); a generator process"
        f" sends at each rate for max({args.open_loop_seconds:g} s,"
        f" {args.open_loop_messages} messages), {args.followups:.0%} follow-ups, after 20"
        f" unmeasured warm-up messages; undelivered: no delivery {args.open_loop_drain:g} s"
        " after the last send (they count as the slowest in p50/p99). Target: p99 <= 50 ms"
        " at 200 msg/s. Floor: aiokafka answering each message with a record in place of the"
        " router (fetch, produce, gather the acks, commit)."
    )
    if pg_server:
        print(f"durability: SQLite synchronous=FULL; PostgreSQL {args.pg_durability}")
    print(
        f"{'store':<12} {'offered':>8} {'achieved':>9} {'msgs':>6} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8} {'undeliv':>7}"
    )
    started = time.perf_counter()
    with (
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        tempfile.TemporaryDirectory(prefix="omnirouter-bench-") as tmp,
    ):
        for rate in rates:
            r = await echo_step(pool, bootstrap, rate, args)
            print(latency_row("aiokafka", rate, r), flush=True)
        for rate in rates:
            url = f"sqlite:///{tmp}/open-{rate:g}.sqlite3"
            r = await open_loop_step(pool, bootstrap, url, rate, args)
            print(latency_row("SQLite", rate, r), flush=True)
        if pg_server:
            for rate in rates:
                with postgres_database(pg_server, "omni_open") as url:
                    r = await open_loop_step(pool, bootstrap, url, rate, args)
                print(latency_row("PostgreSQL", rate, r), flush=True)
    print(f"(table 3 took {time.perf_counter() - started:.0f} s)")


# --- 4. memory per open conversation ----------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def open_conversations(engine: Engine, envelopes: Sequence[Envelope]) -> None:
    for env in envelopes:
        await engine.handle(env, T0)


async def store_memory(url: str, m: int, label: str) -> list[str]:
    """Open `m` conversations through the engine; bytes in the store and in the process."""
    rng = random.Random(5)
    envelopes, _ = traffic(m, 0.0, rng)
    config = bench_config(store=url)
    store = await open_store(url)
    lines = []
    try:
        engine = Engine(config, store, Topics(prefix="bench."), reachability=False)
        await engine.start(T0)
        half = len(envelopes) // 2
        await open_conversations(engine, envelopes[:half])  # warm-up: caches, pools
        gc.collect()
        rss0, objs0 = rss_bytes(), len(gc.get_objects())
        t0 = time.perf_counter()
        await open_conversations(engine, envelopes[half:])
        took = time.perf_counter() - t0
        gc.collect()
        rss1, objs1 = rss_bytes(), len(gc.get_objects())
        k = len(envelopes) - half
        lines.append(
            f"{label}: {m:,} conversations opened (assigned, acked, SLA timers) through"
            f" Engine.handle at {k / took:,.0f}/s; process after the first {half:,}:"
            f" RSS {(rss1 - rss0) / k:+,.0f} B/conversation,"
            f" live Python objects {(objs1 - objs0) / k:+.2f}/conversation"
        )
        lines.extend(await store_bytes(store, url, m))
    finally:
        await store.close()
    return lines


def sqlite_bytes(path: Path) -> tuple[int, list[tuple[str, int]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = db.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    return path.stat().st_size, tables


async def store_bytes(store: Any, url: str, m: int) -> list[str]:
    if url.startswith("sqlite"):
        await store.close()
        size, tables = sqlite_bytes(Path(url.removeprefix("sqlite:///")))
        head = (
            f"  SQLite file {size / 1e6:.1f} MB = {size / m:,.0f} B/conversation; per table/index:"
        )
    else:
        async with store.transaction(readonly=True) as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"
                )
            )
            tables = [(r[0], r[1]) for r in rows]
        size = sum(b for _, b in tables)
        head = f"  PostgreSQL {size / 1e6:.1f} MB = {size / m:,.0f} B/conversation; per table:"
    biggest = ", ".join(f"{name} {b / m:,.0f}" for name, b in tables[:8] if b)
    return [head, f"    {biggest}  (bytes per conversation)"]


async def bench_memory(args: argparse.Namespace, pg_server: str | None) -> None:
    m = args.memory_conversations
    print(f"\n== 4. Memory per open conversation ({m:,} opened, one message each) ==")
    with tempfile.TemporaryDirectory(prefix="omnirouter-bench-") as tmp:
        for line in await store_memory(f"sqlite:///{tmp}/mem.sqlite3", m, "SQLite"):
            print(line)
    if pg_server:
        with postgres_database(pg_server, "omni_mem") as url:
            for line in await store_memory(url, m, "PostgreSQL"):
                print(line)


# --- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=2.0, help="per decision measurement")
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=400, help="end-to-end messages per store")
    p.add_argument("--followups", type=float, default=0.5, help="share of follow-up messages")
    p.add_argument("--raw-messages", type=int, default=20_000, help="records for the baseline")
    p.add_argument("--e2e-timeout", type=float, default=60.0, help="seconds per store, at most")
    p.add_argument("--memory-conversations", type=int, default=400)
    p.add_argument("--kafka", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument("--postgres", metavar="URL", help="admin URL of a server (CREATEDB needed)")
    p.add_argument("--no-e2e", action="store_true", help="skip the Kafka end-to-end table")
    p.add_argument(
        "--open-loop",
        metavar="RATES",
        default="50,200,500",
        help="offered msg/s for the open-loop latency table ('' skips it)",
    )
    p.add_argument("--no-open-loop", dest="open_loop", action="store_const", const="")
    p.add_argument("--open-loop-seconds", type=float, default=3.0, help="sending, per rate")
    p.add_argument("--open-loop-messages", type=int, default=600, help="at least, per rate")
    p.add_argument("--open-loop-drain", type=float, default=5.0, help="wait after the last send")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    args = p.parse_args(argv)
    quiet_logs()
    started = time.perf_counter()
    print(
        f"bench/routing.py: python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews every row)"
    )
    bench_decisions(args)
    pg_ctx: contextlib.AbstractContextManager[str | None] = (
        contextlib.nullcontext(None) if args.no_postgres else postgres_server(args.postgres)
    )
    with pg_ctx as pg_server:
        args.pg_durability = postgres_durability(pg_server) if pg_server else ""
        if pg_server:
            where = "given by --postgres" if args.postgres else "throwaway cluster"
            print(
                f"PostgreSQL ({where}) reports {args.pg_durability};"
                " the SQLite store runs synchronous=FULL (WAL)"
            )
        if not args.no_e2e or args.open_loop:
            from tests.harness.kafka import broker_at  # the decision tables need no harness

            with broker_at(args.kafka) as bootstrap:
                if not args.no_e2e:
                    asyncio.run(bench_e2e(args, bootstrap, pg_server))
                if args.open_loop:
                    asyncio.run(bench_open_loop(args, bootstrap, pg_server))
        asyncio.run(bench_memory(args, pg_server))
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
