"""Prometheus metrics for one daemon, on a registry of its own (tests run several).

Every metric is listed, with its labels, what it means and the alerts on it, in
docs/metrics.md. Conventions: counters end in `_total`, a unit ends a name that has one
(`_seconds`, `_records`), and each counter's known label values (configured channels and
queues, incident kinds, results) are there at 0 from the start and after a reload, so
`rate()` and `increase()` see the first event. The store's view of the floor (queues,
agents, the outbox) is refreshed by the daemon's clock (`set_floor`), not at scrape: a
scrape reads memory only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from router import __version__
from router.store.schema import AGENT_STATUSES, INCIDENT_KINDS

# A `_created` series beside every counter doubles the series for a value nobody
# graphs (the process start time says when counters began).
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGE_KINDS = ("message", "reply", "call", "command", "timer")
SEND_RESULTS = ("sent", "retry", "failed")
RELOAD_RESULTS = ("ok", "invalid", "failed")
# Conversations waiting in no queue (none was configured for them) are shown under this.
NO_QUEUE = ""


@dataclass(frozen=True, slots=True)
class Known:
    """The label values the config names, for counters to start at 0 and for the floor's
    gauges to show 0 (rather than nothing) for a queue nobody waits in."""

    channels: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    channel_types: tuple[str, ...] = ()
    # Where dead letters come from: the inbound topic, channels, outbound topics, "outbox".
    dead_letter_sources: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()  # every topic the outbox may write to
    agents: tuple[str, ...] = ()  # configured agents (the router's processes)
    # This process runs the router, which reports the floor (a channel-only process
    # shows no queues or agents rather than zeros).
    floor: bool = True


@dataclass(frozen=True, slots=True)
class Floor:
    """What the store says about the floor, read in one bounded pass (`router.store.floor`)."""

    # queue -> (waiting conversations, oldest wait in seconds, past their first-response due)
    queues: Mapping[str, tuple[int, float, int]] = field(default_factory=dict)
    agents: Mapping[str, int] = field(default_factory=dict)  # status -> agents
    load: Mapping[str, int] = field(default_factory=dict)  # channel type -> open assigned
    outbox: Mapping[str, int] = field(default_factory=dict)  # topic -> unsent rows


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "omnirouter_build_info",
            "Always 1; the running build's version in its label.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)

        # -- traffic -----------------------------------------------------------------------
        self.messages_in = Counter(
            "omnirouter_messages_in_total",
            "Records consumed from the inbound topic, by channel and kind.",
            ["channel", "kind"],
            registry=r,
        )
        self.messages_out = Counter(
            "omnirouter_messages_out_total",
            "Messages sent out on a channel, by channel and result (sent, retry, failed).",
            ["channel", "result"],
            registry=r,
        )
        self.send_retries = Counter(
            "omnirouter_send_retries_total",
            "Sends on a channel that will be tried again (deferred by the remote side, or a"
            " passing failure).",
            ["channel"],
            registry=r,
        )
        self.duplicates = Counter(
            "omnirouter_duplicates_total",
            "Inbound records already processed (redelivery or re-ingestion).",
            registry=r,
        )
        self.dead_letters = Counter(
            "omnirouter_dead_letters_total",
            "Records sent to the dead-letter topic, by source (a topic, a channel, or outbox).",
            ["source"],
            registry=r,
        )
        self.decisions = Counter(
            "omnirouter_routing_decisions_total",
            "Routing decisions, by action (assign, queue, ack, reply_out, escalate...).",
            ["action"],
            registry=r,
        )
        self.routing_duration = Histogram(
            "omnirouter_routing_duration_seconds",
            "Time from consuming an inbound record to its durable effect (a record handled"
            " in a batch counts its batch's time).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "omnirouter_consumer_lag_records",
            "Records waiting beyond the group's committed offsets, on this member's partitions.",
            ["group"],
            registry=r,
        )

        # -- service levels ----------------------------------------------------------------
        self.sla_warnings = Counter(
            "omnirouter_sla_warnings_total",
            "Conversations whose first-response target came close unanswered (the warning"
            " fired: the customer was told, supervisors alerted), by channel.",
            ["channel"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "omnirouter_sla_breaches_total",
            "Conversations that missed their first-response target, by channel.",
            ["channel"],
            registry=r,
        )
        self.incidents = Counter(
            "omnirouter_incidents_total",
            "Incidents recorded in the register, by kind.",
            ["kind"],
            registry=r,
        )

        # -- the floor, from the store (refreshed by the clock) -----------------------------
        self.queue_depth = Gauge(
            "omnirouter_queue_depth",
            "Conversations waiting for an agent, by queue.",
            ["queue"],
            registry=r,
        )
        self.queue_oldest_wait = Gauge(
            "omnirouter_queue_oldest_wait_seconds",
            "How long the longest-waiting conversation of a queue has waited (0: none waits).",
            ["queue"],
            registry=r,
        )
        self.queue_overdue = Gauge(
            "omnirouter_queue_overdue",
            "Conversations waiting in a queue past their own first-response due time.",
            ["queue"],
            registry=r,
        )
        self.agents = Gauge(
            "omnirouter_agents",
            "Configured agents, by status (available, away, offline).",
            ["status"],
            registry=r,
        )
        self.agent_load = Gauge(
            "omnirouter_agent_open_conversations",
            "Open conversations assigned to agents, by channel type (the load capacity limits).",
            ["channel_type"],
            registry=r,
        )
        self.agents_unreachable = Gauge(
            "omnirouter_agents_unreachable",
            "Configured agents no running channel delivers to (their sink channel is missing,"
            " disabled or has no connector in this build): they are never given work.",
            registry=r,
        )
        self.outbox_depth = Gauge(
            "omnirouter_outbox_depth",
            "Outputs committed by the router and not yet on the bus, by topic.",
            ["topic"],
            registry=r,
        )
        self.outbox_retries = Counter(
            "omnirouter_outbox_retries_total",
            "Outputs the bus could not take for now (they wait for the next flush), by topic.",
            ["topic"],
            registry=r,
        )
        self.unconsumed_deliveries = Gauge(
            "omnirouter_agent_deliveries_unconsumed_records",
            "Deliveries to agents on their topic that the channel reaching them has not sent"
            " (beyond its group's commits; all of them when no channel reads the topic).",
            ["topic"],
            registry=r,
        )

        # -- channels and config -------------------------------------------------------------
        self.connector_up = Gauge(
            "omnirouter_connector_up",
            "1 while a channel's connector is running, 0 while it is starting or restarting.",
            ["channel"],
            registry=r,
        )
        self.connector_down = Gauge(
            "omnirouter_connector_down",
            "1 while a channel is down (a refusal such as a wrong password, or the configured"
            " reconnect attempts in a row failed), with the reason; gone once it is up again.",
            ["channel", "reason"],
            registry=r,
        )
        # First-contact resolution: each resolve, counted by whether the conversation's
        # first agent resolved it, never transferred nor reopened (the share is
        # `first_contact="true"` over all; router.routing.first_contact).
        self.resolutions = Counter(
            "omnirouter_resolutions_total",
            "Conversations resolved, by channel and whether it was a first contact (resolved"
            " by their first agent, no transfer, never reopened).",
            ["channel", "first_contact"],
            registry=r,
        )
        self.queue_resolutions = Counter(
            "omnirouter_queue_resolutions_total",
            "Conversations resolved, by the queue they were in and whether it was a first contact.",
            ["queue", "first_contact"],
            registry=r,
        )
        self.agent_resolutions = Counter(
            "omnirouter_agent_resolutions_total",
            "Conversations resolved, by the agent who had them and whether it was a first contact.",
            ["agent", "first_contact"],
            registry=r,
        )
        self.praise = Counter(
            "omnirouter_praise_total",
            "Praise relayed to an agent: a good follow-up answer or a customer message that"
            " reads as praise, by agent.",
            ["agent"],
            registry=r,
        )
        self.config_reloads = Counter(
            "omnirouter_config_reloads_total",
            "Configuration reloads, by result: ok, invalid (the file), or failed"
            " (valid, but the store could not take its new agents).",
            ["result"],
            registry=r,
        )
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result=result)
        for kind in INCIDENT_KINDS:
            self.incidents.labels(kind=kind)
        self._known = Known(floor=False)
        self._floor = Floor()  # the last one shown

    def know(self, known: Known, *, running: Iterable[str] = ()) -> None:
        """Start every counter at 0 for the label values `known` names (at start and after
        a reload); the floor's gauges drop queues and topics the config no longer has.
        `running`: the channels this process runs (their `connector_up` starts at 0)."""
        for channel in known.channels:
            self.sla_warnings.labels(channel=channel)
            self.sla_breaches.labels(channel=channel)
            self.send_retries.labels(channel=channel)
            for kind in MESSAGE_KINDS:
                self.messages_in.labels(channel=channel, kind=kind)
            for result in SEND_RESULTS:
                self.messages_out.labels(channel=channel, result=result)
        for first in ("true", "false"):
            for channel in known.channels:
                self.resolutions.labels(channel=channel, first_contact=first)
            for queue in known.queues:
                self.queue_resolutions.labels(queue=queue, first_contact=first)
            for agent in known.agents:
                self.agent_resolutions.labels(agent=agent, first_contact=first)
        for agent in known.agents:
            self.praise.labels(agent=agent)
        for source in known.dead_letter_sources:
            self.dead_letters.labels(source=source)
        for topic in known.topics:
            self.outbox_retries.labels(topic=topic)
        for channel in running:
            self.connector_up.labels(channel=channel)
        self._known = known
        if known.floor:
            for status in AGENT_STATUSES:
                self.agents.labels(status=status)
            self._shape(self._floor)

    def resolved(self, channel: str, queue: str | None, agent: str | None, first: bool) -> None:
        """One resolution, committed."""
        label = "true" if first else "false"
        self.resolutions.labels(channel=channel, first_contact=label).inc()
        self.queue_resolutions.labels(queue=queue or NO_QUEUE, first_contact=label).inc()
        if agent is not None:
            self.agent_resolutions.labels(agent=agent, first_contact=label).inc()

    def set_floor(self, floor: Floor) -> None:
        """Show `floor`: every configured queue, channel type and topic (0 where the store
        has none), and whatever else the store has (conversations still waiting in a
        queue a reload removed)."""
        self._floor = floor
        queues, channel_types, topics = self._shape(floor)
        for queue in queues:
            depth, oldest, overdue = floor.queues.get(queue, (0, 0.0, 0))
            self.queue_depth.labels(queue=queue).set(depth)
            self.queue_oldest_wait.labels(queue=queue).set(oldest)
            self.queue_overdue.labels(queue=queue).set(overdue)
        for channel_type in channel_types:
            self.agent_load.labels(channel_type=channel_type).set(floor.load.get(channel_type, 0))
        for topic in topics:
            self.outbox_depth.labels(topic=topic).set(floor.outbox.get(topic, 0))
        for status in AGENT_STATUSES:
            self.agents.labels(status=status).set(floor.agents.get(status, 0))

    def _shape(self, floor: Floor) -> tuple[set[str], set[str], set[str]]:
        """Give the floor's gauges a child for every label value known or in `floor` (new
        ones at 0), and no other; the queues, channel types and topics shown."""
        queues = {*self._known.queues, *floor.queues}
        for gauge in (self.queue_depth, self.queue_oldest_wait, self.queue_overdue):
            _reshape(gauge, "queue", queues)
        channel_types = {*self._known.channel_types, *floor.load}
        _reshape(self.agent_load, "channel_type", channel_types)
        topics = {*self._known.topics, *floor.outbox}
        _reshape(self.outbox_depth, "topic", topics)
        return queues, channel_types, topics

    def set_unconsumed(self, backlog: Mapping[str, int]) -> None:
        """Show each agent delivery topic's backlog, and no other topic."""
        _reshape(self.unconsumed_deliveries, "topic", set(backlog))
        for topic, records in backlog.items():
            self.unconsumed_deliveries.labels(topic=topic).set(records)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reshape(gauge: Gauge, label: str, values: set[str]) -> None:
    """Give a one-label gauge a child for each of `values` (new ones at 0), and no other."""
    # prometheus_client lists a metric's children only in this attribute
    for (value,) in list(gauge._metrics):
        if value not in values:
            gauge.remove(value)
    for value in values:
        gauge.labels(**{label: value})
