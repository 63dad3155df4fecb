"""Which agents deliveries can reach, and which can answer one: from the config and
the connector registry only (no connector runs, no network).

An agent's deliveries go to `omni.agent.<sink channel>`, which only that channel's
connector reads, in the daemon, when the channel is enabled and its type has a
runtime in this build (`ConnectorSpec.factory`). Every sink names its channel
(validation requires it); one that did not would be read by nobody either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.config.model import Config
    from router.config.people import SinkConfig
    from router.connector import ConnectorSpec


def unreachable_agents(config: Config, registry: Mapping[str, ConnectorSpec]) -> dict[str, str]:
    """Agent id -> why nothing delivers to them, for every agent who cannot be reached."""
    channels = {c.name: c for c in config.channels}
    unreachable: dict[str, str] = {}
    for agent in config.agents:
        sink = agent.sink
        channel = channels.get(sink.channel) if sink.channel is not None else None
        if sink.channel is None:
            why = f"its {sink.type} sink names no channel"
        elif channel is None:
            why = f"sink channel {sink.channel} is not configured"
        elif not channel.enabled:
            why = f"sink channel {sink.channel} is disabled"
        elif (spec := registry.get(channel.type)) is None or spec.factory is None:
            why = f"no {channel.type} connector in this build (sink channel {sink.channel})"
        else:
            continue
        unreachable[agent.id] = why
    return unreachable


def sink_accepts(sink: SinkConfig, registry: Mapping[str, ConnectorSpec]) -> bool:
    """Whether the agent can answer a delivery: `sink.accepts`, else the type's default."""
    if sink.accepts is not None:
        return sink.accepts
    spec = registry.get(sink.type)
    return spec is not None and spec.sink_accepts
