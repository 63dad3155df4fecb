"""The routing engine: one record in, its effects in the store and its outputs in the outbox.

For every record (in order per conversation key): dedupe by envelope id,
then, in ONE store transaction, apply the record and write every record it
produces (acknowledgements and replies to customers, deliveries to agents,
timer events) to the outbox table. The daemon publishes the outbox after the
commit, so a crash at any point neither loses an output nor repeats an effect:
a redelivered record is recognised as processed, and unsent outputs are
published on the next pass. Output ids are derived from the input id, so
their consumers can dedupe a republished output too.

The decisions themselves are pure functions (`classify`, `choose_agent`,
business-hours math); this module only gathers their inputs from the store
and applies their results.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from router.bus.base import Topics
from router.config import AgentConfig, Config
from router.envelope import Envelope, Sender, encode, envelope_id
from router.errors import EnvelopeError
from router.routing import tokens
from router.routing.choose import AgentView, Choice, Need, can_take, choose_agent
from router.routing.classify import CustomerFacts, classify
from router.routing.hours import add_business_time, on_shift
from router.routing.identity import (
    IdentityError,
    normalize_identity,
    sender_identity,
    stated_identities,
)
from router.routing.queueing import LEVEL_NAMES, PRIORITY_LEVELS, queue_key
from router.routing.templates import describe_wait, render
from router.store import Store
from router.store import routing as db

log = structlog.get_logger(__name__)

CONSUMER = "router"
TRANSCRIPT_LIMIT = 200
DRAIN_SCAN = 500  # waiting conversations considered per drain pass
SLA_TIMERS = ("sla_warning", "sla_breach")
COMMANDS = frozenset(
    {"available", "away", "offline", "resolve", "transfer", "note", "link", "unlink", "reopen"}
)
_SCORE = re.compile(r"^\s*([1-5])(\s*/\s*5)?\b")


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """One thing the router decided, as `simulate` prints it and the log records it."""

    input: str
    action: str
    conversation_id: str | None = None
    agent: str | None = None
    queue: str | None = None
    priority: str | None = None
    reason: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "conversation_id": self.conversation_id,
            "action": self.action,
            "agent": self.agent,
            "queue": self.queue,
            "priority": self.priority,
            "reason": dict(self.reason),
        }


class _Unit:
    """One record's unit of work: the connection, the clock, and what it decided."""

    def __init__(self, conn: AsyncConnection, now: datetime, input_id: str) -> None:
        self.conn = conn
        self.now = now
        self.input_id = input_id
        self.decisions: list[Decision] = []
        self.outputs = 0

    def decide(self, action: str, **kw: Any) -> None:
        self.decisions.append(Decision(input=self.input_id, action=action, **kw))


class Engine:
    def __init__(self, config: Config, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics
        self.signing_key = b""
        self._on_shift: set[str] | None = None
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take a (re)loaded config; state in the store is untouched."""
        self.config = config
        self.agents: dict[str, AgentConfig] = {a.id: a for a in config.agents}
        self.by_address: dict[str, str] = {}
        for a in config.agents:
            if a.sink.address:
                self.by_address[a.sink.address.casefold()] = a.id
        self.queues = {q.name: q for q in config.queues}
        self.channels = {c.name: c for c in config.channels}
        self.languages = sorted(
            {lang for a in config.agents for lang in a.languages}
            | {lang for t in config.templates.values() for lang in t}
            | {config.routing.default_language}
        )
        self.spoken = {lang for a in config.agents for lang in a.languages}
        key = config.routing.signing_key
        if key is not None:
            self.signing_key = key.get_secret_value().encode()

    async def start(self, now: datetime) -> None:
        """Create agent rows and the signing key (once, kept in the store)."""
        async with self.store.transaction() as conn:
            await db.ensure_agents(conn, {a.id: a.status for a in self.config.agents}, now)
        if not self.signing_key:
            stored = await self.store.get_checkpoint(CONSUMER, "signing_key")
            if stored is None:
                await self.store.set_checkpoint(CONSUMER, "signing_key", secrets.token_hex(32))
                stored = await self.store.get_checkpoint(CONSUMER, "signing_key")
            assert stored is not None
            self.signing_key = stored.encode()

    # --- entry points ----------------------------------------------------------------

    async def handle(self, envelope: Envelope, now: datetime) -> list[Decision]:
        """Apply one record; idempotent by envelope id."""
        async with self.store.transaction() as conn:
            unit = _Unit(conn, now, envelope.id)
            if not await self.store.mark_processed(CONSUMER, envelope.id, conn=conn):
                unit.decide("duplicate", reason={"detail": "already processed"})
                return unit.decisions
            if envelope.kind in ("message", "call") and envelope.sender.role == "customer":
                await self._customer_message(unit, envelope)
            elif envelope.kind == "reply" and envelope.sender.role == "agent":
                await self._agent_reply(unit, envelope)
            elif envelope.kind == "command":
                await self._command(unit, envelope)
            elif envelope.kind == "timer":
                await self._timer(unit, envelope)
            else:
                await self.store.record_message(envelope, conn=conn)
                unit.decide(
                    "ignore",
                    reason={"detail": f"{envelope.kind} from {envelope.sender.role} not routed"},
                )
        return unit.decisions

    async def fire_due_timers(self, now: datetime, limit: int = 200) -> int:
        """Turn due timers into `timer` records on the inbound topic (via the outbox)."""
        async with self.store.transaction() as conn:
            rows = await db.claim_due_timers(conn, now, limit)
            for row in rows:
                conv = (
                    await db.conversation(conn, row.conversation_id)
                    if row.conversation_id
                    else None
                )
                channel = conv.channel if conv is not None else "router"
                thread = conv.thread_key if conv is not None else row.key
                env = Envelope(
                    id=envelope_id("timer", row.key),
                    kind="timer",
                    direction="in",
                    channel=channel,
                    channel_type=conv.channel_type if conv is not None else "router",
                    thread_key=thread,
                    conversation_id=row.conversation_id,
                    sender=Sender(address="omnirouter", role="system"),
                    received_at=now,
                    sent_at=row.due_at,
                    meta={"timer": row.kind, "key": row.key, "payload": row.payload},
                )
                await db.add_outbox(conn, self.topics.inbound, env.bus_key(), encode(env), now)
        return len(rows)

    async def clock_tick(self, now: datetime) -> list[Decision]:
        """Drain queues for agents whose shift just started (capacity appeared)."""
        on = {a.id for a in self.config.agents if on_shift(a, self.config.business_hours, now)}
        started = sorted(on - self._on_shift) if self._on_shift is not None else []
        self._on_shift = on
        if not started:
            return []
        async with self.store.transaction() as conn:
            unit = _Unit(conn, now, f"shift:{now.isoformat()}")
            unit.decide("shift_start", reason={"agents": started})
            await self._drain(unit, started)
        return unit.decisions

    async def waiting_count(self) -> int:
        async with self.store.transaction(readonly=True) as conn:
            return await db.waiting_count(conn)

    # --- customers ---------------------------------------------------------------------

    async def _resolve_customer(self, unit: _Unit, env: Envelope) -> str:
        """The customer behind the sender; links only what is safe to link.

        A new sender identity joins the customer that owns an identity the
        sender stated themselves (their own Telegram contact, a chat form);
        two customers that both exist already are never merged: a conflicting
        link becomes a suggestion for agents.
        """
        conn, now = unit.conn, unit.now
        region = self._default_region(env.channel)
        ident = sender_identity(env, default_region=region)
        owner = await db.identity_owner(conn, ident.kind, ident.value)
        stated = [
            (s, await db.identity_owner(conn, s.kind, s.value))
            for s in stated_identities(env, default_region=region)
            if s != ident
        ]
        if owner is None:
            known = sorted({o for _, o in stated if o is not None})
            if len(known) == 1:
                owner = known[0]
                unit.decide(
                    "link",
                    reason={
                        "identity": ident.kind,
                        "source": "sender stated an identity of a known customer",
                    },
                )
            else:
                owner = await db.create_customer(conn, env.sender.name, now)
            owner = await db.add_identity(conn, ident.kind, ident.value, owner, "auto", now)
        for s, current in stated:
            if current is None:
                await db.add_identity(conn, s.kind, s.value, owner, "stated", now)
                unit.decide("link", reason={"identity": s.kind, "source": "stated by the customer"})
            elif current != owner and await db.suggest_link(
                conn, s.kind, s.value, current, owner, "stated", now
            ):
                unit.decide(
                    "suggest_link",
                    reason={
                        "identity": s.kind,
                        "detail": "identity belongs to another customer; agents decide",
                    },
                )
        return owner

    def _default_region(self, channel: str) -> str | None:
        ch = self.channels.get(channel)
        region = getattr(ch.settings, "default_region", None) if ch is not None else None
        return region if isinstance(region, str) else None

    # --- customer messages --------------------------------------------------------------

    async def _customer_message(self, unit: _Unit, env: Envelope) -> None:
        try:
            customer_id = await self._resolve_customer(unit, env)
        except IdentityError as exc:
            raise EnvelopeError(f"sender: {exc}") from exc
        conn, now = unit.conn, unit.now
        conv = await db.conversation_by_thread(conn, env.channel, env.thread_key)
        thread_meta = self._thread_meta(env, conv.thread_meta if conv is not None else {})
        fresh = conv is None
        if conv is None:
            conv = await db.create_conversation(
                conn,
                {
                    "channel": env.channel,
                    "channel_type": env.channel_type,
                    "thread_key": env.thread_key,
                    "customer_id": customer_id,
                    "status": "open",
                    "priority": PRIORITY_LEVELS[self.config.routing.default_priority],
                    "opened_at": now,
                    "updated_at": now,
                    "skills": {},
                    "tags": [],
                    "complaint": False,
                    "thread_meta": thread_meta,
                },
            )
        else:
            await db.update_conversation(conn, conv.id, thread_meta=thread_meta, updated_at=now)
        await self.store.record_message(
            env.model_copy(update={"conversation_id": conv.id}), conn=conn
        )

        if conv.status in ("resolved", "closed"):
            if await self._satisfaction_answer(unit, conv, env):
                return
            await db.update_conversation(conn, conv.id, status="open", resolved_at=None)
            unit.decide(
                "reopen", conversation_id=conv.id, reason={"detail": "customer wrote again"}
            )
            conv = await db.reload(conn, conv.id)
            fresh = True
        if env.meta.get("is_auto_reply") or env.meta.get("auto_submitted"):
            # Out-of-office and similar: kept in the transcript, no ack, no SLA reset.
            unit.decide(
                "transcript_only", conversation_id=conv.id, reason={"detail": "automatic reply"}
            )
            return
        if conv.owner_agent_id is not None:
            await self._deliver(
                unit,
                conv,
                conv.owner_agent_id,
                "message",
                {"rule": "current_owner", "detail": "one conversation, one owner"},
            )
            unit.decide(
                "deliver",
                conversation_id=conv.id,
                agent=conv.owner_agent_id,
                reason={"rule": "current_owner"},
            )
            return
        if conv.waiting_since is not None and not fresh:
            unit.decide(
                "queued",
                conversation_id=conv.id,
                queue=conv.queue,
                priority=LEVEL_NAMES[conv.priority],
                reason={"detail": "already waiting; message added to the transcript"},
            )
            return
        await self._classify_and_route(unit, conv, env, customer_id)

    def _thread_meta(self, env: Envelope, current: Mapping[str, Any]) -> dict[str, Any]:
        meta = dict(current)
        meta.setdefault("customer_address", env.sender.address)
        meta.setdefault("subject", env.subject)
        if env.meta.get("message_id"):
            meta["last_message_id"] = env.meta["message_id"]
            refs = list(env.meta.get("references") or [])
            if env.meta["message_id"] not in refs:
                refs.append(env.meta["message_id"])
            meta["references"] = refs[-20:]  # enough to thread; bounded
        return meta

    async def _classify_and_route(
        self, unit: _Unit, conv: Any, env: Envelope, customer_id: str
    ) -> None:
        conn, now = unit.conn, unit.now
        cust = await db.customer(conn, customer_id)
        facts = CustomerFacts(
            tier=cust.tier, tags=frozenset(cust.tags or ()), language=cust.language
        )
        result = classify(env, facts, self.config.routing, languages=self.languages, now=now)
        if result.language and result.language != cust.language:
            await db.set_customer_language(conn, customer_id, result.language)
        level = PRIORITY_LEVELS[result.priority]
        due = self._sla_due(conv.channel, conv.channel_type, result.priority, now)
        await db.update_conversation(
            conn,
            conv.id,
            skills=dict(result.skills),
            language=result.language,
            tags=sorted(set(conv.tags or ()) | set(result.tags)),
            complaint=result.complaint,
            priority=level,
            queue=result.queue,
            sla_due_at=due,
        )
        unit.decide(
            "classify",
            conversation_id=conv.id,
            queue=result.queue,
            priority=result.priority,
            reason={
                "rules": list(result.rules),
                "why": list(result.reasons),
                "skills": dict(result.skills),
                "language": result.language,
                "complaint": result.complaint,
            },
        )
        if result.complaint:
            await db.record_incident(
                conn,
                "complaint",
                conv.id,
                customer_id,
                "complaint detected",
                {"reasons": list(result.reasons)},
                now,
            )
        if due is not None and conv.first_response_at is None:
            await self._schedule_sla(unit, conv, now, due)
        conv = await db.reload(conn, conv.id)
        await self._acknowledge(unit, conv, cust, due)
        window_start = now - self.config.routing.last_agent_window
        last = await db.last_agent_of(conn, customer_id, window_start)
        prefer_until = now + self.config.routing.last_agent_wait if last else None
        await db.update_conversation(
            conn, conv.id, preferred_agent_id=last, prefer_until=prefer_until
        )
        conv = await db.reload(conn, conv.id)
        await self._route(unit, conv)

    def _sla_due(
        self, channel: str, channel_type: str, priority: str, now: datetime
    ) -> datetime | None:
        targets = self.config.sla.first_response.get(channel_type)
        if targets is None:
            return None
        hours = self._hours_for(channel)
        return add_business_time(hours, now, targets.for_priority(priority))  # type: ignore[arg-type]

    def _hours_for(self, channel: str) -> Any:
        ch = self.channels.get(channel)
        name = (ch.business_hours if ch is not None else None) or self.config.sla.business_hours
        return self.config.business_hours.get(name) if name else None

    async def _schedule_sla(self, unit: _Unit, conv: Any, start: datetime, due: datetime) -> None:
        warning = start + (due - start) * self.config.sla.warning_at
        base = f"{conv.id}:{start.isoformat()}"
        await db.schedule_timer(
            unit.conn,
            f"sla_warning:{base}",
            conv.id,
            "sla_warning",
            warning,
            {"due": due.isoformat()},
            unit.now,
        )
        await db.schedule_timer(
            unit.conn,
            f"sla_breach:{base}",
            conv.id,
            "sla_breach",
            due,
            {"due": due.isoformat()},
            unit.now,
        )

    async def _acknowledge(self, unit: _Unit, conv: Any, cust: Any, due: datetime | None) -> None:
        channel = self.channels.get(conv.channel)
        template = channel.acknowledge if channel is not None else None
        if template is None or template not in self.config.templates:
            return
        language = conv.language or self.config.routing.default_language
        expected = (
            describe_wait(due, unit.now, language, tz=self._tz_for(conv.channel)) if due else ""
        )
        used, text = render(
            self.config.templates,
            template,
            language,
            default_language=self.config.routing.default_language,
            customer_name=cust.display_name or "",
            expected_response=expected,
            conversation_ref=conv.ref or "",
        )
        await self._to_customer(
            unit, conv, text, purpose="ack", auto=True, template=template, language=used
        )
        unit.decide(
            "ack",
            conversation_id=conv.id,
            reason={
                "template": template,
                "language": used,
                "due": due.isoformat() if due else None,
            },
        )

    def _tz_for(self, channel: str) -> str | None:
        hours = self._hours_for(channel)
        return hours.timezone if hours is not None else None

    # --- choosing and assigning --------------------------------------------------------

    async def _agent_views(self, conn: AsyncConnection, now: datetime) -> list[AgentView]:
        rows = await db.agent_rows(conn)
        load = await db.loads(conn)
        views = []
        for a in self.config.agents:
            row = rows.get(a.id)
            capacity = {**self.config.routing.default_capacity, **a.capacity}
            views.append(
                AgentView(
                    id=a.id,
                    skills=a.skills,
                    languages=frozenset(a.languages),
                    channels=frozenset(a.channels),
                    capacity=capacity,
                    load=load.get(a.id, {}),
                    status=row.status if row is not None else a.status,
                    on_shift=on_shift(a, self.config.business_hours, now),
                    last_assigned_at=row.last_assigned_at if row is not None else None,
                    supervisor=a.supervisor,
                )
            )
        return views

    def _need(self, conv: Any) -> Need:
        skills = dict(conv.skills or {})
        queue = self.queues.get(conv.queue) if conv.queue else None
        if queue is not None:
            for skill, level in queue.skills.items():
                skills[skill] = max(level, skills.get(skill, 0))
        language = conv.language if conv.language in self.spoken else None
        return Need(
            channel=conv.channel, channel_type=conv.channel_type, skills=skills, language=language
        )

    async def _route(self, unit: _Unit, conv: Any, *, widen: bool = False) -> bool:
        """Assign the conversation or leave it waiting; True when assigned."""
        conn, now = unit.conn, unit.now
        views = await self._agent_views(conn, now)
        need = self._need(conv)
        waiting_allowed = not widen and conv.prefer_until is not None and now < conv.prefer_until
        choice = choose_agent(
            views, need, last_agent_id=conv.preferred_agent_id, wait_for_last_agent=waiting_allowed
        )
        if choice.agent_id is not None and await self._assign(unit, conv, choice, views):
            return True
        await self._wait(unit, conv, choice)
        return False

    async def _assign(
        self, unit: _Unit, conv: Any, choice: Choice, views: Sequence[AgentView]
    ) -> bool:
        agent_id = choice.agent_id
        assert agent_id is not None
        view = next(v for v in views if v.id == agent_id)
        capacity = view.capacity_for(conv.channel_type)
        if not await db.take_capacity(unit.conn, agent_id, conv.channel_type, capacity, unit.now):
            return False  # another router process took the last slot; queue instead
        await db.start_assignment(unit.conn, conv.id, agent_id, choice.reason, unit.now)
        await db.update_conversation(
            unit.conn,
            conv.id,
            owner_agent_id=agent_id,
            waiting_since=None,
            preferred_agent_id=None,
            prefer_until=None,
            updated_at=unit.now,
        )
        conv = await db.reload(unit.conn, conv.id)
        await self._deliver(unit, conv, agent_id, "assigned", choice.reason)
        unit.decide(
            "assign",
            conversation_id=conv.id,
            agent=agent_id,
            queue=conv.queue,
            priority=LEVEL_NAMES[conv.priority],
            reason=choice.reason,
        )
        return True

    async def _wait(self, unit: _Unit, conv: Any, choice: Choice) -> None:
        since = conv.waiting_since or unit.now
        await db.update_conversation(unit.conn, conv.id, waiting_since=since)
        if choice.rule == "waiting_for_last_agent" and conv.prefer_until is not None:
            await db.schedule_timer(
                unit.conn,
                f"widen:{conv.id}:{conv.prefer_until.isoformat()}",
                conv.id,
                "widen",
                conv.prefer_until,
                {},
                unit.now,
            )
        unit.decide(
            "queue",
            conversation_id=conv.id,
            queue=conv.queue,
            priority=LEVEL_NAMES[conv.priority],
            reason=choice.reason,
        )

    async def _drain(self, unit: _Unit, agent_ids: Sequence[str] | None = None) -> None:
        """Give waiting conversations to agents with capacity, best queue position first."""
        conn, now = unit.conn, unit.now
        rows = await db.waiting(conn, DRAIN_SCAN)
        if not rows:
            return
        step = self.config.routing.aging_step
        rows.sort(key=lambda r: queue_key(r.priority, r.waiting_since, now, step))
        for conv in rows:
            views = await self._agent_views(conn, now)
            if agent_ids is not None:
                eligible = [v for v in views if v.id in agent_ids]
                if not any(sum(v.capacity.values()) > sum(v.load.values()) for v in eligible):
                    return
            need = self._need(conv)
            waiting_allowed = conv.prefer_until is not None and now < conv.prefer_until
            choice = choose_agent(
                views,
                need,
                last_agent_id=conv.preferred_agent_id,
                wait_for_last_agent=waiting_allowed,
            )
            if choice.agent_id is None:
                continue
            if (
                agent_ids is not None
                and choice.agent_id not in agent_ids
                and not any(can_take(v, need) for v in views if v.id in agent_ids)
            ):
                continue
            await self._assign(unit, conv, choice, views)

    # --- deliveries -------------------------------------------------------------------

    async def _deliver(
        self,
        unit: _Unit,
        conv: Any,
        agent_id: str,
        event: str,
        reason: Mapping[str, Any],
        note: str | None = None,
    ) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        conn = unit.conn
        cust = await db.customer(conn, conv.customer_id)
        idents = await db.customer_identities(conn, conv.customer_id)
        since = unit.now - timedelta(days=self.config.routing.context_days)
        others = []
        for other in await db.recent_conversations(conn, conv.customer_id, since, conv.id):
            others.append(
                {
                    "conversation_id": other.id,
                    "ref": other.ref,
                    "channel": other.channel,
                    "channel_type": other.channel_type,
                    "status": other.status,
                    "owner": other.owner_agent_id,
                    "updated_at": other.updated_at.isoformat(),
                    "extract": (await db.last_text(conn, other.id))[:160],
                }
            )
        transcript = []
        for row in await db.transcript(conn, conv.id, TRANSCRIPT_LIMIT):
            e = row.envelope
            transcript.append(
                {
                    "id": row.id,
                    "kind": row.kind,
                    "direction": row.direction,
                    "from": e.get("sender", {}),
                    "at": e.get("received_at"),
                    "subject": e.get("subject"),
                    "text": e.get("text", ""),
                    "attachments": e.get("attachments", []),
                }
            )
        suggestions = [
            {
                "identity": s.kind,
                "current_customer": s.current_customer_id,
                "proposed_customer": s.proposed_customer_id,
                "source": s.source,
            }
            for s in await db.pending_suggestions(conn, conv.customer_id)
        ]
        context: dict[str, Any] = {
            "customer": {
                "id": cust.id,
                "name": cust.display_name,
                "tier": cust.tier,
                "tags": list(cust.tags or ()),
                "language": cust.language,
                "identities": [{"kind": i.kind, "value": i.value} for i in idents],
                "link_suggestions": suggestions,
            },
            "conversation": {
                "id": conv.id,
                "ref": conv.ref,
                "channel": conv.channel,
                "channel_type": conv.channel_type,
                "status": conv.status,
                "priority": LEVEL_NAMES[conv.priority],
                "queue": conv.queue,
                "tags": list(conv.tags or ()),
                "complaint": conv.complaint,
                "language": conv.language,
                "sla_due_at": conv.sla_due_at.isoformat() if conv.sla_due_at else None,
                "subject": (conv.thread_meta or {}).get("subject"),
            },
            "transcript": transcript,
            "other_conversations": others,
        }
        sink = agent.sink
        sink_name = sink.channel or sink.type
        subject = f"[#{conv.ref}] {context['conversation']['subject'] or 'Conversation'}"
        env = Envelope(
            id=envelope_id(f"agent:{agent_id}", f"{unit.input_id}:{event}:{unit.outputs}"),
            kind="message",
            direction="out",
            channel=sink_name,
            channel_type=sink.type,
            thread_key=conv.id,
            conversation_id=conv.id,
            sender=Sender(address="omnirouter", name="omnirouter", role="system"),
            received_at=unit.now,
            subject=subject,
            text=_summary(context, reason, event, note),
            meta={
                "delivery": {
                    "event": event,
                    "agent": {"id": agent.id, "name": agent.name},
                    "sink": {"type": sink.type, "address": sink.address, "url": sink.url},
                    "token": tokens.issue(self.signing_key, conv.id, agent.id),
                    "reason": dict(reason),
                    "note": note,
                    "context": context,
                }
            },
        )
        unit.outputs += 1
        await db.add_outbox(
            conn, self.topics.agent(sink_name), env.bus_key(), encode(env), unit.now
        )

    async def _to_customer(
        self,
        unit: _Unit,
        conv: Any,
        text: str,
        *,
        purpose: str,
        auto: bool,
        template: str | None = None,
        language: str | None = None,
        agent: AgentConfig | None = None,
    ) -> None:
        meta = dict(conv.thread_meta or {})
        subject = meta.get("subject") or ""
        if subject and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        env = Envelope(
            id=envelope_id(conv.channel, f"out:{unit.input_id}:{purpose}:{unit.outputs}"),
            kind="reply",
            direction="out",
            channel=conv.channel,
            channel_type=conv.channel_type,
            thread_key=conv.thread_key,
            conversation_id=conv.id,
            sender=Sender(
                address=agent.id if agent else "omnirouter",
                name=agent.name if agent else None,
                role="agent" if agent else "system",
            ),
            received_at=unit.now,
            subject=subject or None,
            text=text,
            meta={
                "to": [meta.get("customer_address")],
                "in_reply_to": meta.get("last_message_id"),
                "references": meta.get("references", []),
                "conversation_ref": conv.ref,
                "auto": auto,
                "purpose": purpose,
                "template": template,
                "language": language,
            },
        )
        unit.outputs += 1
        await self.store.record_message(env, conn=unit.conn)
        await db.add_outbox(
            unit.conn, self.topics.outbound(conv.channel), env.bus_key(), encode(env), unit.now
        )

    # --- agents: replies and commands ---------------------------------------------------

    def _agent_of(self, env: Envelope) -> str | None:
        return self.by_address.get(env.sender.address.casefold())

    async def _authorised(self, unit: _Unit, env: Envelope, agent_id: str) -> Any | None:
        """The conversation this agent may act on, from a valid token; None after rejecting."""
        token = env.meta.get("token")
        conv_id = (
            tokens.verify(self.signing_key, token, agent_id) if isinstance(token, str) else None
        )
        conv = await db.conversation(unit.conn, conv_id) if conv_id else None
        if conv is None:
            await self._reject(unit, agent_id, "missing or invalid conversation token")
            return None
        agent = self.agents[agent_id]
        if conv.owner_agent_id not in (None, agent_id) and not agent.supervisor:
            await self._reject(unit, agent_id, "conversation is owned by another agent")
            return None
        return conv

    async def _reject(self, unit: _Unit, agent_id: str | None, why: str) -> None:
        log.warning("agent input rejected", record_id=unit.input_id, agent=agent_id, reason=why)
        unit.decide("reject", agent=agent_id, reason={"detail": why})
        agent = self.agents.get(agent_id) if agent_id else None
        if agent is None:
            return
        notice = Envelope(
            id=envelope_id(f"agent:{agent.id}", f"{unit.input_id}:rejected"),
            kind="message",
            direction="out",
            channel=agent.sink.channel or agent.sink.type,
            channel_type=agent.sink.type,
            thread_key=f"notice:{agent.id}",
            sender=Sender(address="omnirouter", name="omnirouter", role="system"),
            received_at=unit.now,
            subject="Not delivered",
            text=f"Your message was not delivered to the customer: {why}.",
            meta={
                "delivery": {
                    "event": "rejected",
                    "agent": {"id": agent.id, "name": agent.name},
                    "sink": {
                        "type": agent.sink.type,
                        "address": agent.sink.address,
                        "url": agent.sink.url,
                    },
                    "reason": {"detail": why},
                    "in_reply_to": unit.input_id,
                }
            },
        )
        await db.add_outbox(
            unit.conn,
            self.topics.agent(agent.sink.channel or agent.sink.type),
            notice.bus_key(),
            encode(notice),
            unit.now,
        )

    async def _agent_reply(self, unit: _Unit, env: Envelope) -> None:
        agent_id = self._agent_of(env)
        if agent_id is None:
            await self._reject(unit, None, "sender is not a configured agent")
            return
        conv = await self._authorised(unit, env, agent_id)
        if conv is None:
            return
        await self.store.record_message(
            env.model_copy(update={"conversation_id": conv.id}), conn=unit.conn
        )
        agent = self.agents[agent_id]
        await self._to_customer(unit, conv, env.text, purpose="reply", auto=False, agent=agent)
        if conv.first_response_at is None:
            await db.update_conversation(unit.conn, conv.id, first_response_at=unit.now)
            await db.cancel_timers(unit.conn, conv.id, SLA_TIMERS, unit.now)
        await db.accept_assignment(unit.conn, conv.id, unit.now)
        unit.decide(
            "reply_out",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"channel": conv.channel, "thread_key": conv.thread_key},
        )

    async def _command(self, unit: _Unit, env: Envelope) -> None:
        agent_id = self._agent_of(env)
        command = env.meta.get("command") or {}
        name = str(command.get("name", "")).lower()
        args = [str(a) for a in command.get("args", [])]
        if agent_id is None:
            await self._reject(unit, None, "sender is not a configured agent")
            return
        if name not in COMMANDS:
            await self._reject(unit, agent_id, f"unknown command {name!r}")
            return
        if name in ("available", "away", "offline"):
            changed = await db.set_agent_status(unit.conn, agent_id, name, unit.now)
            unit.decide("presence", agent=agent_id, reason={"status": name, "changed": changed})
            if name == "available":
                await self._drain(unit, [agent_id])
            return
        conv = await self._authorised(unit, env, agent_id)
        if conv is None:
            return
        await self.store.record_message(
            env.model_copy(update={"conversation_id": conv.id}), conn=unit.conn
        )
        if name == "resolve":
            await self._resolve(unit, conv, agent_id)
        elif name == "transfer":
            await self._transfer(unit, conv, agent_id, args)
        elif name == "note":
            unit.decide(
                "note", conversation_id=conv.id, agent=agent_id, reason={"note": " ".join(args)}
            )
        elif name == "reopen":
            await db.update_conversation(unit.conn, conv.id, status="open", resolved_at=None)
            conv = await db.reload(unit.conn, conv.id)
            unit.decide("reopen", conversation_id=conv.id, agent=agent_id, reason={"by": agent_id})
            if conv.owner_agent_id is None:
                await self._route(unit, conv, widen=True)
        elif name in ("link", "unlink"):
            await self._link(unit, conv, agent_id, name, args)

    async def _release(self, unit: _Unit, conv: Any, why: str) -> str | None:
        agent_id = await db.end_assignment(unit.conn, conv.id, why, unit.now)
        if agent_id is not None:
            await db.release_capacity(unit.conn, agent_id, conv.channel_type)
        await db.update_conversation(unit.conn, conv.id, owner_agent_id=None)
        return agent_id

    async def _resolve(self, unit: _Unit, conv: Any, agent_id: str) -> None:
        owner = await self._release(unit, conv, "resolved")
        await db.update_conversation(
            unit.conn, conv.id, status="resolved", resolved_at=unit.now, waiting_since=None
        )
        await db.cancel_timers(unit.conn, conv.id, (*SLA_TIMERS, "widen"), unit.now)
        after = self.config.sla.follow_up_after
        if after is not None and self.config.sla.follow_up_template:
            await db.schedule_timer(
                unit.conn,
                f"followup:{conv.id}:{unit.now.isoformat()}",
                conv.id,
                "followup",
                unit.now + after,
                {"agent": owner or agent_id},
                unit.now,
            )
        unit.decide("resolve", conversation_id=conv.id, agent=agent_id, reason={"by": agent_id})
        if owner is not None:
            await self._drain(unit, [owner])

    async def _transfer(self, unit: _Unit, conv: Any, agent_id: str, args: list[str]) -> None:
        target = args[0] if args else ""
        note = " ".join(args[1:]) or None
        if target not in self.queues and target not in self.agents:
            await self._reject(
                unit,
                agent_id,
                f"transfer target {target!r} is neither a queue nor an agent",
            )
            return
        previous = await self._release(unit, conv, f"transferred to {target}")
        if target in self.queues:
            await db.update_conversation(
                unit.conn,
                conv.id,
                queue=target,
                preferred_agent_id=None,
                prefer_until=None,
                waiting_since=None,
            )
        else:
            await db.update_conversation(
                unit.conn,
                conv.id,
                preferred_agent_id=target,
                prefer_until=unit.now + self.config.routing.last_agent_wait,
                waiting_since=None,
            )
        conv = await db.reload(unit.conn, conv.id)
        await self._to_customer(
            unit,
            conv,
            _specialist_text(conv.language),
            purpose="transfer",
            auto=True,
            language=conv.language,
        )
        unit.decide(
            "transfer",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"to": target, "from": previous, "note": note},
        )
        assigned = await self._route(unit, conv, widen=target in self.queues)
        if assigned and note:
            conv = await db.reload(unit.conn, conv.id)
            await self._deliver(
                unit,
                conv,
                conv.owner_agent_id,
                "transfer_note",
                {"rule": "transfer", "from": previous},
                note=note,
            )
        if previous is not None:
            await self._drain(unit, [previous])

    async def _link(
        self, unit: _Unit, conv: Any, agent_id: str, name: str, args: list[str]
    ) -> None:
        if len(args) != 2:
            await self._reject(
                unit,
                agent_id,
                f"usage: {name} <email|phone|telegram|webchat> <value>",
            )
            return
        try:
            ident = normalize_identity(
                args[0], args[1], default_region=self._default_region(conv.channel)
            )
        except IdentityError as exc:
            await self._reject(unit, agent_id, str(exc))
            return
        if name == "unlink":
            removed = await db.remove_identity(unit.conn, ident.kind, ident.value, conv.customer_id)
            unit.decide(
                "unlink",
                conversation_id=conv.id,
                agent=agent_id,
                reason={"identity": ident.kind, "removed": removed},
            )
            return
        owner = await db.identity_owner(unit.conn, ident.kind, ident.value)
        if owner is None:
            await db.add_identity(
                unit.conn, ident.kind, ident.value, conv.customer_id, f"agent:{agent_id}", unit.now
            )
            unit.decide(
                "link",
                conversation_id=conv.id,
                agent=agent_id,
                reason={"identity": ident.kind, "source": f"agent {agent_id}"},
            )
        elif owner != conv.customer_id:
            await db.suggest_link(
                unit.conn,
                ident.kind,
                ident.value,
                owner,
                conv.customer_id,
                f"agent:{agent_id}",
                unit.now,
            )
            unit.decide(
                "suggest_link",
                conversation_id=conv.id,
                agent=agent_id,
                reason={
                    "identity": ident.kind,
                    "detail": "belongs to another customer; not merged",
                },
            )

    # --- timers -----------------------------------------------------------------------

    async def _timer(self, unit: _Unit, env: Envelope) -> None:
        kind = env.meta.get("timer")
        conv = (
            await db.conversation(unit.conn, env.conversation_id) if env.conversation_id else None
        )
        if conv is None:
            unit.decide("ignore", reason={"detail": f"timer {kind} without conversation"})
            return
        if kind == "sla_warning":
            await self._sla_warning(unit, conv)
        elif kind == "sla_breach":
            if conv.first_response_at is None and conv.status == "open":
                await db.record_incident(
                    unit.conn,
                    "sla_breach",
                    conv.id,
                    conv.customer_id,
                    "first-response target missed",
                    {
                        "due": env.meta.get("payload", {}).get("due"),
                        "owner": conv.owner_agent_id,
                        "queue": conv.queue,
                    },
                    unit.now,
                )
                unit.decide(
                    "breach",
                    conversation_id=conv.id,
                    agent=conv.owner_agent_id,
                    queue=conv.queue,
                    reason={"detail": "first-response target missed"},
                )
        elif kind == "widen":
            if conv.owner_agent_id is None and conv.waiting_since is not None:
                await db.update_conversation(
                    unit.conn, conv.id, preferred_agent_id=None, prefer_until=None
                )
                conv = await db.reload(unit.conn, conv.id)
                unit.decide(
                    "widen",
                    conversation_id=conv.id,
                    reason={"detail": "previous agent still busy; any qualified agent"},
                )
                await self._route(unit, conv, widen=True)
        elif kind == "followup":
            await self._follow_up(unit, conv, env)
        else:
            unit.decide(
                "ignore", conversation_id=conv.id, reason={"detail": f"unknown timer {kind}"}
            )

    async def _sla_warning(self, unit: _Unit, conv: Any) -> None:
        if conv.first_response_at is not None or conv.status != "open":
            return
        sla = self.config.sla
        if sla.warning_template and sla.warning_template in self.config.templates:
            cust = await db.customer(unit.conn, conv.customer_id)
            used, text = render(
                self.config.templates,
                sla.warning_template,
                conv.language or self.config.routing.default_language,
                default_language=self.config.routing.default_language,
                customer_name=cust.display_name or "",
                conversation_ref=conv.ref or "",
            )
            await self._to_customer(
                unit,
                conv,
                text,
                purpose="on_it",
                auto=True,
                template=sla.warning_template,
                language=used,
            )
        reason = {
            "rule": "sla_warning",
            "detail": "first-response target close",
            "due": conv.sla_due_at.isoformat() if conv.sla_due_at else None,
        }
        for sup in (a for a in self.config.agents if a.supervisor):
            await self._deliver(unit, conv, sup.id, "escalation", reason)
        queue = self.queues.get(conv.queue) if conv.queue else None
        rerouted = None
        if conv.owner_agent_id is None and queue is not None and queue.overflow:
            await db.update_conversation(unit.conn, conv.id, queue=queue.overflow)
            conv = await db.reload(unit.conn, conv.id)
            rerouted = queue.overflow
        unit.decide(
            "escalate",
            conversation_id=conv.id,
            agent=conv.owner_agent_id,
            queue=conv.queue,
            reason={
                **reason,
                "overflow": rerouted,
                "supervisors": [a.id for a in self.config.agents if a.supervisor],
            },
        )
        if rerouted:
            await self._route(unit, conv, widen=True)

    async def _follow_up(self, unit: _Unit, conv: Any, env: Envelope) -> None:
        template = self.config.sla.follow_up_template
        if conv.status != "resolved" or template is None or template not in self.config.templates:
            return
        agent = self.agents.get(str(env.meta.get("payload", {}).get("agent", "")))
        cust = await db.customer(unit.conn, conv.customer_id)
        used, text = render(
            self.config.templates,
            template,
            conv.language or self.config.routing.default_language,
            default_language=self.config.routing.default_language,
            customer_name=cust.display_name or "",
            agent_name=agent.name if agent else "",
            conversation_ref=conv.ref or "",
        )
        meta = dict(conv.thread_meta or {})
        meta["awaiting_satisfaction"] = True
        await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
        conv = await db.reload(unit.conn, conv.id)
        await self._to_customer(
            unit, conv, text, purpose="followup", auto=True, template=template, language=used
        )
        unit.decide("followup", conversation_id=conv.id, reason={"template": template})

    async def _satisfaction_answer(self, unit: _Unit, conv: Any, env: Envelope) -> bool:
        meta = dict(conv.thread_meta or {})
        if not meta.pop("awaiting_satisfaction", False):
            return False
        await db.update_conversation(unit.conn, conv.id, thread_meta=meta)
        if self._satisfied(env.text):
            await db.update_conversation(unit.conn, conv.id, status="closed")
            unit.decide("close", conversation_id=conv.id, reason={"detail": "customer satisfied"})
            return True
        sla = self.config.sla
        skill = sla.senior_skill or self.config.routing.complaints.skill
        skills = dict(conv.skills or {})
        skills[skill] = max(sla.senior_level, skills.get(skill, 0))
        await db.record_incident(
            unit.conn,
            "bad_satisfaction",
            conv.id,
            conv.customer_id,
            "customer not satisfied after resolution",
            {"answer": env.text[:500]},
            unit.now,
        )
        await db.update_conversation(
            unit.conn,
            conv.id,
            status="open",
            resolved_at=None,
            skills=skills,
            priority=max(conv.priority, 2),
            preferred_agent_id=None,
            prefer_until=None,
        )
        conv = await db.reload(unit.conn, conv.id)
        unit.decide(
            "reopen",
            conversation_id=conv.id,
            priority=LEVEL_NAMES[conv.priority],
            reason={"detail": "bad satisfaction answer; senior agent", "skills": skills},
        )
        await self._route(unit, conv, widen=True)
        return True

    def _satisfied(self, text: str) -> bool:
        score = _SCORE.match(text)
        if score:
            return int(score.group(1)) >= 4
        folded = text.casefold()
        return any(
            re.search(rf"\b{re.escape(word.casefold())}\b", folded)
            for words in self.config.sla.satisfied_keywords.values()
            for word in words
        )


def _specialist_text(language: str | None) -> str:
    if language == "es":
        return (
            "Un especialista de nuestro equipo continúa con tu caso; ya tiene toda la conversación."
        )
    return "A specialist on our team is taking over your case, with the whole conversation in hand."


def _summary(
    context: Mapping[str, Any], reason: Mapping[str, Any], event: str, note: str | None
) -> str:
    """The delivery as plain text, for sinks that show text (email, Telegram)."""
    c, conv = context["customer"], context["conversation"]
    lines = [
        f"{event.replace('_', ' ').capitalize()}: conversation #{conv['ref']} on {conv['channel']}",
        f"Customer: {c['name'] or '(no name)'} — tier {c['tier']}"
        + (f", tags {', '.join(c['tags'])}" if c["tags"] else ""),
        "Identities: " + ", ".join(f"{i['kind']} {i['value']}" for i in c["identities"]),
        f"Priority: {conv['priority']}"
        + (" — COMPLAINT" if conv["complaint"] else "")
        + (f" — answer by {conv['sla_due_at']}" if conv["sla_due_at"] else ""),
        f"Why you: {reason.get('rule', '')} {reason.get('detail', '')}".rstrip(),
    ]
    if note:
        lines.append(f"Note: {note}")
    lines.append("")
    lines.append("Transcript:")
    for m in context["transcript"][-20:]:
        who = (m["from"] or {}).get("name") or (m["from"] or {}).get("role", "")
        lines.append(f"  [{m['at']}] {who}: {m['text']}")
    if context["other_conversations"]:
        lines.append("")
        lines.append("Other recent conversations:")
        for o in context["other_conversations"]:
            lines.append(f"  #{o['ref']} {o['channel']} ({o['status']}): {o['extract']}")
    return "\n".join(lines)
