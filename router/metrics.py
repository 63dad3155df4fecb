"""Prometheus metrics for one daemon, on a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter(
            "omnirouter_messages_in_total",
            "Records consumed from the inbound topic, by channel and kind.",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "omnirouter_messages_out_total",
            "Messages sent out on a channel, by channel and result.",
            ["channel", "result"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "omnirouter_duplicates_total",
            "Inbound records already processed (redelivery or re-ingestion).",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "omnirouter_dead_letters_total",
            "Records sent to the dead-letter topic, by source topic.",
            ["source"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "omnirouter_routing_decisions_total",
            "Routing decisions, by action (assign, queue, ack, reply_out, escalate...).",
            ["action"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "omnirouter_queue_depth",
            "Conversations waiting for an agent.",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "omnirouter_consumer_lag",
            "Records waiting beyond the group's committed offsets, on this member's partitions.",
            ["group"],
            registry=self.registry,
        )
        self.routing_seconds = Histogram(
            "omnirouter_routing_seconds",
            "Time from consuming an inbound record to its durable effect.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.connector_up = Gauge(
            "omnirouter_connector_up",
            "1 while a channel's connector is running, 0 while it is restarting.",
            ["channel"],
            registry=self.registry,
        )
        self.connector_down = Gauge(
            "omnirouter_connector_down",
            "1 while a channel is down (a refusal such as a wrong password, or the configured"
            " reconnect attempts in a row failed), with the reason; gone once it is up again.",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "omnirouter_config_reloads_total",
            "Configuration reloads, by result: ok, invalid (the file), or failed"
            " (valid, but the store could not take its new agents).",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
