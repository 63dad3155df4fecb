"""The floor at one moment: what the supervisor page and `omnirouter status` show.

Two parts. `Floor` is read from the store and the config only, so any process
can take it (the command line reads it without a daemon, and without channel
secrets). `Runtime` is what only the running daemon knows: its channels' health,
its last config reload, the dead letters it sent since it started. Both are plain
frozen data; `as_json` gives the one JSON form (`/status.json`, `status --json`).

Agents are read as routing reads them (`router.routing.assign.agent_views`):
status, shift, load and capacity per channel type, and whether deliveries can
reach them, with the same words the routing reasons use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from router.bus.base import Topics
from router.config import Config
from router.connector import ConnectorSpec
from router.routing import first_contact
from router.routing.assign import agent_views
from router.routing.context import Routing
from router.routing.hours import changes, sla_zone
from router.routing.queueing import LEVEL_NAMES
from router.status import queries
from router.store import Store
from router.store import routing as db

# A conversation is at risk once past its SLA warning, or this close to its due time.
AT_RISK_WITHIN = timedelta(minutes=15)
AT_RISK_SHOWN = 50  # the nearest ones; the count says how many there are
INCIDENTS_SHOWN = 50
SHIFT_LOOKAHEAD = timedelta(days=8)  # a shift change further away is not shown


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueLine:
    name: str | None  # None: conversations that wait in no named queue
    depth: int
    oldest_since: datetime | None  # when the longest-waiting conversation started waiting


@dataclass(frozen=True, kw_only=True, slots=True)
class Load:
    channel_type: str
    open: int
    capacity: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentLine:
    id: str
    name: str
    status: str  # available | away | offline
    status_since: datetime | None
    on_shift: bool
    schedule: str | None  # null: no schedule (on shift whenever available)
    shift_changes_at: datetime | None  # the next start or end of the shift
    load: tuple[Load, ...]
    unreachable: str | None  # why deliveries cannot reach them; null: reachable
    supervisor: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskLine:
    conversation_id: str
    ref: str | None
    channel: str
    queue: str | None
    owner: str | None
    priority: str
    due_at: datetime
    waiting_since: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class IncidentLine:
    id: int
    kind: str
    created_at: datetime
    cause: str
    conversation_id: str | None
    ref: str | None
    channel: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolutionLine:
    """First-contact resolution today, for one channel, queue or agent."""

    by: str  # channel | queue | agent
    name: str
    resolved: int
    first_contact: int
    share: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Floor:
    taken_at: datetime
    timezone: str  # of the page's times and of "today"
    today_since: datetime  # midnight in `timezone`, as UTC
    queues: tuple[QueueLine, ...]
    agents: tuple[AgentLine, ...]
    at_risk_count: int
    at_risk: tuple[RiskLine, ...]
    incidents_today: int
    incidents: tuple[IncidentLine, ...]
    dead_outputs: int  # outputs that could never be published (kept in the store)
    # Resolved today by their first agent, no transfer, never reopened.
    resolutions: tuple[ResolutionLine, ...] = ()
    # Praise relayed to each agent in the last 7 days (agent id, count), most first.
    praise_week: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelLine:
    name: str
    type: str
    # up | down | connecting | disabled | elsewhere (another process runs it) | stopped
    state: str
    reason: str | None = None
    retriable: bool | None = None
    since: datetime | None = None
    next_attempt: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Reload:
    at: datetime
    result: str  # ok | invalid | failed
    detail: tuple[str, ...] = ()  # the problems, or the sections that need a restart


@dataclass(frozen=True, kw_only=True, slots=True)
class Runtime:
    started_at: datetime
    channels: tuple[ChannelLine, ...]
    reload: Reload | None  # null: no reload since the start
    dead_letters: int  # records this process sent to the dead-letter topic since it started


@dataclass(frozen=True, kw_only=True, slots=True)
class Status:
    floor: Floor
    runtime: Runtime | None = None
    runtime_note: str | None = None  # why there is no runtime part ("daemon not reachable")


def zone_of(config: Config) -> str:
    """The page's time zone: the supervisor's, else the SLA clock's, else UTC."""
    return config.supervisor.timezone or sla_zone(config)


async def take_floor(
    config: Config,
    store: Store,
    now: datetime,
    *,
    registry: Mapping[str, ConnectorSpec] | None = None,
    routing: Routing | None = None,
) -> Floor:
    """The store's part of the snapshot at `now`. `routing`: the engine's, when there
    is one (its reachability); otherwise one is built from the config."""
    ctx = routing or Routing(config, store, Topics(), registry=registry)
    tz = zone_of(config)
    local = now.astimezone(ZoneInfo(tz))
    today = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    async with store.transaction(readonly=True) as conn:
        depths = await queries.queue_depths(conn)
        views = await agent_views(ctx, conn, now)
        rows = await db.agent_rows(conn)
        risk_count, risky = await queries.at_risk(conn, now, AT_RISK_WITHIN, AT_RISK_SHOWN)
        incident_count, today_incidents = await queries.incidents_since(
            conn, today, INCIDENTS_SHOWN
        )
        dead = await queries.dead_outputs(conn)
        resolved = first_contact.tally(await queries.resolved_since(conn, today))
        praised = await db.praise_since(conn, now - timedelta(days=7), now)
    return Floor(
        taken_at=now,
        timezone=tz,
        today_since=today,
        queues=_queues(config, depths),
        agents=tuple(_agent(config, view, rows.get(view.id), now) for view in views),
        at_risk_count=risk_count,
        at_risk=tuple(
            RiskLine(
                conversation_id=r.id,
                ref=r.ref,
                channel=r.channel,
                queue=r.queue,
                owner=r.owner_agent_id,
                priority=LEVEL_NAMES.get(int(r.priority), str(r.priority)),
                due_at=r.sla_due_at,
                waiting_since=r.waiting_since,
            )
            for r in risky
        ),
        incidents_today=incident_count,
        incidents=tuple(
            IncidentLine(
                id=int(r.id),
                kind=r.kind,
                created_at=r.created_at,
                cause=r.cause,
                conversation_id=r.conversation_id,
                ref=r.ref,
                channel=r.channel,
            )
            for r in today_incidents
        ),
        dead_outputs=dead,
        resolutions=tuple(
            ResolutionLine(
                by=by,
                name=name,
                resolved=counts[0],
                first_contact=counts[1],
                share=first_contact.share(counts),
            )
            for by in ("channel", "queue", "agent")
            for name, counts in sorted(resolved[by].items())
        ),
        praise_week=tuple(
            sorted(Counter(r.agent_id for r in praised).items(), key=lambda kv: (-kv[1], kv[0]))
        ),
    )


def _queues(config: Config, depths: Sequence[Any]) -> tuple[QueueLine, ...]:
    """Every configured queue (empty ones too), then any other the store names."""
    found = {r.queue: r for r in depths}
    names: list[str | None] = [q.name for q in config.queues]
    names += sorted((n for n in found if n not in names and n is not None), key=str)
    if None in found:
        names.append(None)
    lines = []
    for name in names:
        row = found.get(name)
        lines.append(
            QueueLine(
                name=name,
                depth=int(row.depth) if row is not None else 0,
                oldest_since=row.oldest if row is not None else None,
            )
        )
    return tuple(lines)


def _agent(config: Config, view: Any, row: Any, now: datetime) -> AgentLine:
    agent = next(a for a in config.agents if a.id == view.id)
    next_change = None
    hours = config.business_hours.get(agent.schedule) if agent.schedule else None
    if hours is not None:
        found = changes(hours, now, now + SHIFT_LOOKAHEAD, agent.timezone)
        next_change = found[0] if found else None
    # The types the floor has channels of (not every type the build knows), and any load.
    served = {c.type for c in config.channels if c.enabled}
    types = sorted(
        {t for t in served if view.capacity.get(t, 0) > 0}
        | {t for t, n in view.load.items() if n > 0}
    )
    return AgentLine(
        id=view.id,
        name=agent.name,
        status=view.status,
        status_since=row.status_since if row is not None else None,
        on_shift=view.on_shift,
        schedule=agent.schedule,
        shift_changes_at=next_change,
        load=tuple(
            Load(channel_type=t, open=view.load.get(t, 0), capacity=view.capacity.get(t, 0))
            for t in types
        ),
        unreachable=view.unreachable,
        supervisor=agent.supervisor,
    )


class RunnerState(Protocol):
    """What a running channel says of itself (`router.channels.ChannelRunner`)."""

    name: str
    up: bool

    @property
    def down(self) -> Any: ...  # `router.channels.Down` or None


def channel_lines(
    config: Config, runners: Iterable[RunnerState], runs_here: Callable[[str], bool]
) -> tuple[ChannelLine, ...]:
    """Every configured channel's health, as this process sees it."""
    by_name = {r.name: r for r in runners}
    lines = []
    for channel in config.channels:
        runner = by_name.get(channel.name)
        if runner is None:
            state, reason = "disabled", None
            if channel.enabled and not runs_here(channel.name):
                state, reason = "elsewhere", "not run by this process (run --only)"
            elif channel.enabled:
                state, reason = "stopped", "enabled after the daemon started: restart it"
            lines.append(
                ChannelLine(name=channel.name, type=channel.type, state=state, reason=reason)
            )
        elif runner.down is not None:
            down = runner.down
            lines.append(
                ChannelLine(
                    name=channel.name,
                    type=channel.type,
                    state="down",
                    reason=down.reason,
                    retriable=down.retriable,
                    since=down.since,
                    next_attempt=down.next_attempt,
                )
            )
        else:
            state = "up" if runner.up else "connecting"
            lines.append(ChannelLine(name=channel.name, type=channel.type, state=state))
    return tuple(lines)


def counted(counter: Any) -> int:
    """The sum of a Prometheus counter over all its labels."""
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def as_json(status: Status) -> dict[str, Any]:
    """The JSON form (datetimes as ISO 8601 strings, through orjson)."""
    import orjson

    body: dict[str, Any] = {
        "floor": status.floor,
        "runtime": status.runtime,
        "runtime_note": status.runtime_note,
    }
    parsed: dict[str, Any] = orjson.loads(orjson.dumps(body))
    return parsed


def runtime_from_json(data: Mapping[str, Any]) -> Runtime:
    """The daemon's part of a `/status.json` body; raises KeyError/TypeError/ValueError."""

    def when(value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    reload = data.get("reload")
    started = when(data["started_at"])
    if started is None:
        raise ValueError("started_at is missing")
    return Runtime(
        started_at=started,
        channels=tuple(
            ChannelLine(
                name=str(c["name"]),
                type=str(c["type"]),
                state=str(c["state"]),
                reason=c.get("reason"),
                retriable=c.get("retriable"),
                since=when(c.get("since")),
                next_attempt=when(c.get("next_attempt")),
            )
            for c in data["channels"]
        ),
        reload=None
        if not reload
        else Reload(
            at=when(reload["at"]) or started,
            result=str(reload["result"]),
            detail=tuple(str(d) for d in reload.get("detail", ())),
        ),
        dead_letters=int(data["dead_letters"]),
    )
