"""Agents needed per hour and channel, next to those the schedules provide (pure).

Per hour: offered traffic A = arrivals * mean handling time / 3600 s (erlangs);
Erlang C (`router.staffing.erlang`) gives the slots that answer `share` of the
arrivals within the channel type's first-response target for normal priority.
A slot is one conversation an agent holds at once: an agent takes `capacity` of
them on a channel type (chat several, phone one), so agents needed = slots ÷
that capacity, rounded up. Scheduled: the agents serving the channel who are on
shift at the middle of the hour, and their slots. An agent serving several
channels counts on each: the figures are per channel, not a roster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from router.config import Config
from router.routing.hours import on_shift
from router.staffing.erlang import servers_needed
from router.staffing.traffic import Traffic

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a channel's figures are computed from (shown with them)."""

    channel: str
    channel_type: str
    handle: float  # seconds
    handle_source: str  # "measured (N)" or "given"
    target: float  # seconds
    share: float
    capacity: int  # slots per agent on this channel type


@dataclass(frozen=True, slots=True)
class HourPlan:
    hour: datetime  # local start
    channel: str
    arrivals: int
    traffic: float  # erlangs
    slots_needed: int
    agents_needed: int
    service_level: float  # with the slots needed
    agents_scheduled: int
    slots_scheduled: int

    @property
    def short(self) -> bool:
        return self.slots_scheduled < self.slots_needed


class StaffingError(ValueError):
    """A channel's figures cannot be worked out; the message says what to give."""


def inputs_for(
    config: Config,
    traffic: Traffic,
    *,
    targets: Mapping[str, timedelta],
    capacities: Mapping[str, int],
    handle_given: Mapping[str, float],
    target_given: float | None,
    share: float,
) -> list[Inputs]:
    """Per channel with arrivals: handling time (given, else measured), target, capacity.
    `targets`, `capacities`: per channel type (the types' defaults, then the config's)."""
    found = []
    for channel in sorted({c for c, _ in traffic.arrivals}):
        kind = traffic.channel_types[channel]
        measured = traffic.mean_handle(channel)
        if channel in handle_given:
            handle, source = handle_given[channel], "given"
        elif measured is not None:
            handle, source = measured[0], f"measured ({measured[1]})"
        else:
            raise StaffingError(
                f"{channel}: no handling time measured (no assignment ended there);"
                f" give one with --handle-time {channel}=5m"
            )
        target = target_given
        if target is None:
            if kind not in targets:
                raise StaffingError(
                    f"{channel}: its type {kind!r} has no first-response target;"
                    " give one with --target"
                )
            target = targets[kind].total_seconds()
        found.append(
            Inputs(
                channel=channel,
                channel_type=kind,
                handle=max(handle, 1.0),
                handle_source=source,
                target=target,
                share=share,
                capacity=max(1, capacities.get(kind, 1)),
            )
        )
    return found


def plan(
    config: Config,
    traffic: Traffic,
    inputs: Iterable[Inputs],
    capacities: Mapping[str, int],
) -> list[HourPlan]:
    """Every hour of the traffic's days, per channel with arrivals that day."""
    rows = []
    for given in inputs:
        days = sorted({start.date() for c, start in traffic.arrivals if c == given.channel})
        starts = [s for c, s in traffic.arrivals if c == given.channel]
        zone = starts[0].tzinfo
        for day in days:
            first = datetime(day.year, day.month, day.day, tzinfo=zone)
            for h in range(24):
                # Wall-clock hours: a daylight-saving day has 23 or 25; a skipped hour
                # has no arrivals and its row says so.
                start = first + h * HOUR
                arrivals = traffic.arrivals.get((given.channel, start), 0)
                offered = arrivals * given.handle / HOUR.total_seconds()
                needed = servers_needed(offered, given.handle, given.target, given.share)
                agents, slots = _scheduled(config, given, capacities, start + HOUR / 2)
                rows.append(
                    HourPlan(
                        hour=start,
                        channel=given.channel,
                        arrivals=arrivals,
                        traffic=offered,
                        slots_needed=needed.servers,
                        agents_needed=math.ceil(needed.servers / given.capacity),
                        service_level=needed.service_level,
                        agents_scheduled=agents,
                        slots_scheduled=slots,
                    )
                )
    return rows


def _scheduled(
    config: Config, given: Inputs, capacities: Mapping[str, int], at: datetime
) -> tuple[int, int]:
    agents = slots = 0
    for a in config.agents:
        if a.channels and given.channel not in a.channels:
            continue
        capacity = {**capacities, **a.capacity}.get(given.channel_type, 0)
        if capacity <= 0 or not on_shift(a, config.business_hours, at):
            continue
        agents += 1
        slots += capacity
    return agents, slots
