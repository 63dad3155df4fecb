"""`omnirouter staffing`: agents needed per hour and channel from a day of traffic (Erlang C),
next to those the config's schedules provide.

`traffic` reads arrivals and handling times from a store (a simulated run of an
events file, or the router's own); `plan` works out the hours; `erlang` is the
model; `report` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta, tzinfo
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from router.bus.base import Topics
from router.config import Config
from router.config.types import Duration
from router.routing.hours import sla_zone
from router.staffing import report
from router.staffing.plan import StaffingError, inputs_for, plan
from router.staffing.traffic import Traffic, read_traffic
from router.store import Store

__all__ = ["StaffingError", "default_zone", "read_handle_times", "run_staffing", "seconds"]

_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


def default_zone(config: Config) -> tzinfo:
    """The zone hours are read in: the SLA's business hours', else UTC."""
    return ZoneInfo(sla_zone(config))


async def run_staffing(
    config: Config,
    out: TextIO,
    *,
    events: Sequence[tuple[int, dict[str, Any]]] | None = None,
    store: Store | None = None,
    day: date | None = None,
    zone: tzinfo | None = None,
    handle_given: Mapping[str, float] | None = None,
    target_given: float | None = None,
    share: float = 0.8,
    fmt: Literal["table", "json"] = "table",
) -> int:
    """Work out and print the day: from `events` simulated on `config`, or from `store`."""
    from router.routing.context import Routing
    from router.simulate.runner import simulated

    zone = zone or default_zone(config)
    traffic: Traffic
    if events is not None:
        async with simulated(config, events, None) as (_, sim_store):
            traffic = await read_traffic(sim_store, zone, day)
            lookups = Routing(config, sim_store, Topics(), reachability=False)
    else:
        assert store is not None
        traffic = await read_traffic(store, zone, day, last_day=day is None)
        lookups = Routing(config, store, Topics(), reachability=False)
    if not traffic.arrivals:
        raise StaffingError("no conversations in that history: nothing to work out")
    targets = {kind: t.normal for kind, t in lookups.targets.items()}
    inputs = inputs_for(
        config,
        traffic,
        targets=targets,
        capacities=lookups.default_capacity,
        handle_given=handle_given or {},
        target_given=target_given,
        share=share,
    )
    rows = plan(config, traffic, inputs, lookups.default_capacity)
    lines = report.table(inputs, rows) if fmt == "table" else report.json_lines(inputs, rows)
    for line in lines:
        out.write(line + "\n")
    return 0


def seconds(value: str) -> float:
    """A duration as the config writes them (`90s`, `5m`, `1h30m`), in seconds."""
    try:
        return _DURATION.validate_python(value).total_seconds()
    except ValidationError:
        raise StaffingError(f"{value!r}: expected a duration such as 90s, 5m or 1h") from None


def read_handle_times(values: Sequence[str]) -> dict[str, float]:
    """`CHANNEL=DURATION` pairs as seconds per channel."""
    given = {}
    for value in values:
        channel, sep, duration = value.partition("=")
        if not sep or not channel:
            raise StaffingError(f"--handle-time {value!r}: expected CHANNEL=DURATION, e.g. chat=5m")
        given[channel] = seconds(duration)
    return given
