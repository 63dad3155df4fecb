"""The staffing figures as a table for people, or JSON lines for tools."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from router.staffing.plan import HourPlan, Inputs

MODEL = (
    "Erlang C (M/M/N: random arrivals, exponential handling, no abandonment), per hour;"
    " a slot is one conversation an agent holds at once."
)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def table(inputs: Sequence[Inputs], rows: Sequence[HourPlan]) -> Iterator[str]:
    yield MODEL
    yield "Inputs:"
    for i in inputs:
        yield (
            f"  {i.channel} ({i.channel_type}): handling {_duration(i.handle)} {i.handle_source},"
            f" target {i.share:.0%} within {_duration(i.target)},"
            f" {i.capacity} slot{'s' if i.capacity != 1 else ''} per agent"
        )
    yield ""
    head = (
        f"{'HOUR':<16}  {'CHANNEL':<16}  {'ARRIVALS':>8}  {'ERLANGS':>7}  "
        f"{'NEEDED':>6}  {'SCHEDULED':>9}  {'SERVICE':>7}  NOTE"
    )
    yield head
    short = 0
    for r in rows:
        if not r.arrivals and not r.agents_scheduled:
            continue  # closed and quiet: nothing to say
        note = ""
        if r.short:
            short += 1
            note = f"SHORT by {r.slots_needed - r.slots_scheduled} slot(s)"
        yield (
            f"{r.hour:%Y-%m-%d %H:%M}  {r.channel:<16}  {r.arrivals:>8}  {r.traffic:>7.2f}  "
            f"{r.agents_needed:>6}  {r.agents_scheduled:>9}  {r.service_level:>7.1%}  {note}"
        ).rstrip()
    yield ""
    yield (
        f"{short} hour(s) where the schedules fall short"
        if short
        else "The schedules cover every hour."
    )


def json_lines(inputs: Sequence[Inputs], rows: Sequence[HourPlan]) -> Iterator[str]:
    for i in inputs:
        yield _dump(
            {
                "type": "inputs",
                "model": "erlang_c",
                "channel": i.channel,
                "channel_type": i.channel_type,
                "handle_seconds": round(i.handle, 3),
                "handle_source": i.handle_source,
                "target_seconds": i.target,
                "share": i.share,
                "slots_per_agent": i.capacity,
            }
        )
    for r in rows:
        yield _dump(
            {
                "type": "hour",
                "hour": r.hour.isoformat(),
                "channel": r.channel,
                "arrivals": r.arrivals,
                "erlangs": round(r.traffic, 4),
                "slots_needed": r.slots_needed,
                "agents_needed": r.agents_needed,
                "service_level": round(r.service_level, 4),
                "agents_scheduled": r.agents_scheduled,
                "slots_scheduled": r.slots_scheduled,
                "short": r.short,
            }
        )


def _dump(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()
