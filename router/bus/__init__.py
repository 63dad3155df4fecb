"""The bus: a durable partitioned log with consumer groups (Kafka or embedded SQLite)."""

from __future__ import annotations

from router.bus.base import Bus, Consumer, Record, Topics
from router.bus.embedded import EmbeddedBus, EmbeddedConsumer
from router.bus.kafka import KafkaBus, KafkaConsumer
from router.bus.partition import murmur2, partition_for

__all__ = [
    "Bus",
    "Consumer",
    "EmbeddedBus",
    "EmbeddedConsumer",
    "KafkaBus",
    "KafkaConsumer",
    "Record",
    "Topics",
    "murmur2",
    "partition_for",
]
