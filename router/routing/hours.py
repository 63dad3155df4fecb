"""Business hours: whether a moment is open, the next opening, SLA time that counts.

All datetimes are timezone-aware; a naive one is a `ValueError`. The weekly
ranges are wall-clock times in the schedule's IANA time zone, so daylight
saving time is handled by `zoneinfo`: on the night the clocks go back an
overnight range really lasts an hour longer, and on the night they go forward
an hour shorter. A range start or end that falls in the skipped hour means the
moment the clocks change. Holidays are closed all day (their date is read in
the same time zone); a range ending `24:00` runs until midnight.

Results are returned in the time zone of the datetime given.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from router.config.people import AgentConfig, BusinessHoursConfig

if TYPE_CHECKING:
    from router.config import Config

# A schedule that has been closed for this long will never open: a config problem.
MAX_CLOSED_DAYS = 400

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ONE_DAY = timedelta(days=1)

Interval = tuple[datetime, datetime]  # [start, end) in UTC


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


def _instant(day: date, at: time | None, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time `at` (None: 24:00) on `day` in `tz`."""
    if at is None:
        day, at = day + _ONE_DAY, time(0)
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first of two, if repeated
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # A wall time the clocks skip: the moment they change, found between the
    # instant read with the old offset and the one read with the new offset.
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp())
    lo, hi = min(lo, hi), max(lo, hi)
    after = datetime.fromtimestamp(hi, UTC).astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _day_intervals(hours: BusinessHoursConfig, tz: ZoneInfo, day: date) -> list[Interval]:
    if day in hours.holidays:
        return []
    ranges = hours.weekly.get(DAY_NAMES[day.weekday()])  # type: ignore[call-overload]
    if not ranges:
        return []
    out = []
    for r in sorted(ranges, key=lambda r: r.start):
        start, end = _instant(day, r.start, tz), _instant(day, r.end, tz)
        if end > start:
            out.append((start, end))
    return out


def _intervals(hours: BusinessHoursConfig, tz: ZoneInfo, after: datetime) -> Iterator[Interval]:
    """Open intervals (UTC) that end after `after` (UTC), in order; bounded."""
    day = after.astimezone(tz).date() - _ONE_DAY
    closed_days = 0
    while closed_days <= MAX_CLOSED_DAYS:
        found = False
        for start, end in _day_intervals(hours, tz, day):
            found = True
            if end > after:
                yield start, end
        closed_days = 0 if found else closed_days + 1
        day += _ONE_DAY
    raise ValueError(
        f"business hours in {hours.timezone} have no open time in {MAX_CLOSED_DAYS} days"
    )


def _is_open(hours: BusinessHoursConfig, tz: ZoneInfo, at: datetime) -> bool:
    day = at.astimezone(tz).date()
    return any(s <= at < e for s, e in _day_intervals(hours, tz, day))


def is_open(hours: BusinessHoursConfig | None, at: datetime) -> bool:
    """Whether `hours` are open at `at` (no hours: always open)."""
    if hours is None:
        return True
    return _is_open(hours, _zone(hours.timezone), _aware(at, "at"))


def sla_zone(config: Config) -> str:
    """The zone of the SLA clock's business hours (`sla.business_hours`), else UTC: where
    "today" and "Monday 09:00" are read when no channel says otherwise."""
    hours = config.business_hours.get(config.sla.business_hours or "")
    return hours.timezone if hours is not None else "UTC"


def hours_of(config: Config, channel: str) -> BusinessHoursConfig | None:
    """The business hours `channel` runs on: its own, else `sla.business_hours`."""
    own = next((c.business_hours for c in config.channels if c.name == channel), None)
    name = own or config.sla.business_hours
    return config.business_hours.get(name) if name else None


def next_open(hours: BusinessHoursConfig | None, at: datetime) -> datetime:
    """The first open moment at or after `at` (`at` itself when open)."""
    utc = _aware(at, "at")
    if hours is None:
        return at
    for start, _ in _intervals(hours, _zone(hours.timezone), utc):
        return max(start, utc).astimezone(at.tzinfo)
    raise AssertionError("unreachable: _intervals ends by raising")  # pragma: no cover


def add_business_time(
    hours: BusinessHoursConfig | None, start: datetime, duration: timedelta
) -> datetime:
    """The moment when `duration` of open time has elapsed after `start`.

    With 09:00-18:00 Monday to Friday, one hour from Friday 17:30 is Monday
    09:30. A zero duration gives the next open moment. Raises `ValueError` for
    a negative duration or hours with no open time for `MAX_CLOSED_DAYS`.
    """
    if duration < timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    utc = _aware(start, "start")
    if hours is None:
        return start + duration
    remaining = duration
    for s, e in _intervals(hours, _zone(hours.timezone), utc):
        s = max(s, utc)
        available = e - s
        if remaining <= available:
            return (s + remaining).astimezone(start.tzinfo)
        remaining -= available
    raise AssertionError("unreachable: _intervals ends by raising")  # pragma: no cover


def business_time_between(
    hours: BusinessHoursConfig | None, start: datetime, end: datetime
) -> timedelta:
    """Open time between `start` and `end` (zero when `end` is not after `start`)."""
    a, b = _aware(start, "start"), _aware(end, "end")
    if b <= a:
        return timedelta(0)
    if hours is None:
        return b - a
    total = timedelta(0)
    tz = _zone(hours.timezone)
    day = a.astimezone(tz).date() - _ONE_DAY
    last = b.astimezone(tz).date()
    while day <= last:
        for s, e in _day_intervals(hours, tz, day):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += hi - lo
        day += _ONE_DAY
    return total


def on_shift(
    agent: AgentConfig, schedules: Mapping[str, BusinessHoursConfig], at: datetime
) -> bool:
    """Whether `agent` works at `at` by their schedule (no schedule: always on shift).

    The agent's own `timezone`, when given, is the zone their schedule's
    weekly ranges and holidays are read in.
    """
    if agent.schedule is None:
        return True
    try:
        hours = schedules[agent.schedule]
    except KeyError:
        raise KeyError(f"agent {agent.id}: no business hours named {agent.schedule!r}") from None
    tz = _zone(agent.timezone or hours.timezone)
    return _is_open(hours, tz, _aware(at, "at"))


def changes(
    hours: BusinessHoursConfig, after: datetime, until: datetime, timezone: str | None = None
) -> list[datetime]:
    """The instants in (`after`, `until`] (UTC) when `hours` open or close, in order,
    read in `timezone` (default: the schedule's own), as `on_shift` reads them."""
    a, b = _aware(after, "after"), _aware(until, "until")
    tz = _zone(timezone or hours.timezone)
    found: set[datetime] = set()
    day = a.astimezone(tz).date() - _ONE_DAY
    while day <= b.astimezone(tz).date():
        for start, end in _day_intervals(hours, tz, day):
            found.update(t for t in (start, end) if a < t <= b)
        day += _ONE_DAY
    return sorted(found)
