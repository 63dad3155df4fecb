from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.config.people import AgentConfig, BusinessHoursConfig
from router.routing.hours import (
    add_business_time,
    business_time_between,
    hours_of,
    is_open,
    next_open,
    on_shift,
)

MADRID = ZoneInfo("Europe/Madrid")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def hours(
    weekly: dict[str, list[str]], tz: str = "Europe/Madrid", **kw: Any
) -> BusinessHoursConfig:
    return BusinessHoursConfig.model_validate({"timezone": tz, "weekly": weekly, **kw})


OFFICE = hours({d: ["09:00-18:00"] for d in WEEKDAYS}, holidays=["2025-12-25"])
SPLIT = hours(
    {
        **{d: ["09:00-14:00", "15:00-18:00"] for d in ("mon", "tue", "wed", "thu")},
        "fri": ["09:00-15:00"],
    }
)
NIGHTS = hours({d: ["22:00-24:00"] for d in WEEKDAYS} | {"sat": ["00:00-06:00"]})
ALWAYS = hours({d: ["00:00-24:00"] for d in (*WEEKDAYS, "sat", "sun")})


def mad(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        (OFFICE, mad(2025, 11, 7, 9, 0), True),  # Friday, opening minute
        (OFFICE, mad(2025, 11, 7, 17, 59), True),
        (OFFICE, mad(2025, 11, 7, 18, 0), False),  # the end is exclusive
        (OFFICE, mad(2025, 11, 7, 8, 59), False),
        (OFFICE, mad(2025, 11, 8, 12, 0), False),  # Saturday
        (OFFICE, mad(2025, 12, 25, 12, 0), False),  # holiday, a Thursday
        (OFFICE, datetime(2025, 11, 7, 8, 30, tzinfo=UTC), True),  # 09:30 in Madrid
        (SPLIT, mad(2025, 11, 4, 14, 30), False),  # lunch
        (SPLIT, mad(2025, 11, 7, 15, 30), False),  # Friday ends at 15:00
        (NIGHTS, mad(2025, 11, 7, 23, 59), True),  # until midnight
        (NIGHTS, mad(2025, 11, 8, 0, 0), True),  # Saturday's own range
        (NIGHTS, mad(2025, 11, 8, 6, 0), False),
        (None, mad(2025, 11, 8, 3, 0), True),
    ],
)
def test_is_open(schedule: BusinessHoursConfig | None, at: datetime, expected: bool) -> None:
    assert is_open(schedule, at) is expected


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        (OFFICE, mad(2025, 11, 7, 10, 0), mad(2025, 11, 7, 10, 0)),
        (OFFICE, mad(2025, 11, 7, 18, 0), mad(2025, 11, 10, 9, 0)),
        (OFFICE, mad(2025, 12, 24, 19, 0), mad(2025, 12, 26, 9, 0)),  # over the holiday
        (SPLIT, mad(2025, 11, 4, 14, 10), mad(2025, 11, 4, 15, 0)),
        (NIGHTS, mad(2025, 11, 7, 12, 0), mad(2025, 11, 7, 22, 0)),
        (None, mad(2025, 11, 8, 3, 0), mad(2025, 11, 8, 3, 0)),
    ],
)
def test_next_open(schedule: BusinessHoursConfig | None, at: datetime, expected: datetime) -> None:
    assert next_open(schedule, at) == expected


def test_results_keep_the_callers_zone() -> None:
    at = datetime(2025, 11, 7, 17, 0, tzinfo=UTC)  # 18:00 in Madrid, closed
    result = next_open(OFFICE, at)
    assert result.tzinfo is UTC
    assert result == datetime(2025, 11, 10, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "start", "duration", "expected"),
    [
        # the example: Friday 17:30 + 1h with 09:00-18:00 is Monday 09:30
        (OFFICE, mad(2025, 11, 7, 17, 30), timedelta(hours=1), mad(2025, 11, 10, 9, 30)),
        (OFFICE, mad(2025, 11, 7, 10, 0), timedelta(hours=1), mad(2025, 11, 7, 11, 0)),
        (OFFICE, mad(2025, 11, 7, 17, 0), timedelta(hours=1), mad(2025, 11, 7, 18, 0)),
        (OFFICE, mad(2025, 11, 8, 10, 0), timedelta(minutes=5), mad(2025, 11, 10, 9, 5)),
        (OFFICE, mad(2025, 11, 8, 10, 0), timedelta(0), mad(2025, 11, 10, 9, 0)),
        (OFFICE, mad(2025, 11, 3, 9, 0), timedelta(hours=24), mad(2025, 11, 5, 15, 0)),
        # Christmas Day (Thursday) is closed
        (OFFICE, mad(2025, 12, 24, 17, 0), timedelta(hours=2), mad(2025, 12, 26, 10, 0)),
        (SPLIT, mad(2025, 11, 4, 13, 30), timedelta(hours=1), mad(2025, 11, 4, 15, 30)),
        (SPLIT, mad(2025, 11, 7, 14, 0), timedelta(hours=2), mad(2025, 11, 10, 10, 0)),
        (NIGHTS, mad(2025, 11, 7, 23, 0), timedelta(hours=2), mad(2025, 11, 8, 1, 0)),
        (None, mad(2025, 11, 8, 10, 0), timedelta(hours=3), mad(2025, 11, 8, 13, 0)),
    ],
)
def test_add_business_time(
    schedule: BusinessHoursConfig | None,
    start: datetime,
    duration: timedelta,
    expected: datetime,
) -> None:
    assert add_business_time(schedule, start, duration) == expected


# Europe/Madrid: 2026-03-29 02:00 CET -> 03:00 CEST; 2025-10-26 03:00 CEST -> 02:00 CET.
@pytest.mark.parametrize(
    ("start", "duration", "expected_utc"),
    [
        # spring forward: the Sunday has 23 hours, so 24h of open time ends at 01:00 Monday
        (mad(2026, 3, 29, 0, 0), timedelta(hours=24), datetime(2026, 3, 29, 23, 0, tzinfo=UTC)),
        (mad(2026, 3, 29, 1, 30), timedelta(hours=1), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        # fall back: the Sunday has 25 hours
        (mad(2025, 10, 26, 0, 0), timedelta(hours=25), datetime(2025, 10, 26, 23, 0, tzinfo=UTC)),
        (mad(2025, 10, 26, 1, 30), timedelta(hours=2), datetime(2025, 10, 26, 1, 30, tzinfo=UTC)),
    ],
)
def test_add_business_time_across_dst(
    start: datetime, duration: timedelta, expected_utc: datetime
) -> None:
    due = add_business_time(ALWAYS, start, duration)
    # PEP 495: a repeated wall time (fold=1) never equals an instant in another zone
    assert due.astimezone(UTC) == expected_utc


def test_dst_days_have_their_real_length() -> None:
    assert business_time_between(ALWAYS, mad(2026, 3, 29), mad(2026, 3, 30)) == timedelta(hours=23)
    assert business_time_between(ALWAYS, mad(2025, 10, 26), mad(2025, 10, 27)) == timedelta(
        hours=25
    )
    # 09:00-18:00 is nine hours on both DST Sundays
    sundays = hours({"sun": ["09:00-18:00"]})
    for day in (mad(2026, 3, 29), mad(2025, 10, 26)):
        assert business_time_between(sundays, day, day + timedelta(days=1)) == timedelta(hours=9)


def test_range_starting_in_the_skipped_hour_opens_when_the_clocks_change() -> None:
    early = hours({"sun": ["02:30-04:00"]})
    opens = next_open(early, mad(2026, 3, 29, 0, 0))
    assert opens == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert is_open(early, datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    assert not is_open(early, datetime(2026, 3, 29, 0, 59, tzinfo=UTC))


def test_overnight_range_on_the_fall_back_night_is_an_hour_longer() -> None:
    night = hours({"sun": ["00:00-06:00"]})
    sunday = mad(2025, 10, 26)
    assert business_time_between(night, sunday, sunday + timedelta(days=1)) == timedelta(hours=7)


def test_no_open_hours_is_a_config_problem() -> None:
    never = hours({})
    with pytest.raises(ValueError, match="no open time"):
        add_business_time(never, mad(2025, 11, 7, 10, 0), timedelta(minutes=1))
    with pytest.raises(ValueError, match="no open time"):
        next_open(never, mad(2025, 11, 7, 10, 0))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_time(OFFICE, mad(2025, 11, 7, 10, 0), timedelta(seconds=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(OFFICE, datetime(2025, 11, 7, 10, 0))


SCHEDULES = {
    "office": OFFICE,
    "spring": hours({"mon": ["09:00-17:00"]}, tz="Europe/London"),
}


def agent(**kw: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "id": "ben",
            "name": "Ben",
            "sink": {"type": "webhook", "channel": "hooks", "url": "https://hooks.example.com/ben"},
            **kw,
        }
    )


@pytest.mark.parametrize(
    ("fields", "at", "expected"),
    [
        ({}, mad(2025, 11, 8, 3, 0), True),  # no schedule: always on shift
        ({"schedule": "office"}, mad(2025, 11, 7, 9, 30), True),
        ({"schedule": "office"}, mad(2025, 11, 8, 9, 30), False),
        ({"schedule": "office"}, mad(2025, 12, 25, 10, 0), False),
        # in London, 09:00-18:00 is 10:00-19:00 in Madrid
        ({"schedule": "office", "timezone": "Europe/London"}, mad(2025, 11, 7, 9, 30), False),
        ({"schedule": "office", "timezone": "Europe/London"}, mad(2025, 11, 7, 18, 30), True),
        ({"schedule": "office", "timezone": "America/New_York"}, mad(2025, 11, 7, 16, 0), True),
        ({"schedule": "spring"}, datetime(2026, 3, 30, 8, 0, tzinfo=UTC), True),  # 09:00 BST
        ({"schedule": "spring"}, datetime(2026, 3, 23, 8, 30, tzinfo=UTC), False),  # 08:30 GMT
    ],
)
def test_on_shift(fields: dict[str, Any], at: datetime, expected: bool) -> None:
    assert on_shift(agent(**fields), SCHEDULES, at) is expected


def test_on_shift_unknown_schedule() -> None:
    with pytest.raises(KeyError, match="no business hours named 'night'"):
        on_shift(agent(schedule="night"), SCHEDULES, mad(2025, 11, 7, 10, 0))


# --- invariants --------------------------------------------------------------------

SCHEDULE_CHOICES = [OFFICE, SPLIT, NIGHTS, ALWAYS, hours({"sun": ["02:30-04:00"]})]
# From a year before to a year after both DST changes, in whole minutes.
instants = st.integers(
    min_value=int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) // 60,
    max_value=int(datetime(2026, 12, 31, tzinfo=UTC).timestamp()) // 60,
).map(lambda m: datetime.fromtimestamp(m * 60, UTC))
durations = st.integers(min_value=0, max_value=60 * 24 * 10).map(lambda m: timedelta(minutes=m))


@settings(max_examples=300)
@given(st.sampled_from(SCHEDULE_CHOICES), instants, durations)
def test_add_business_time_invariants(
    schedule: BusinessHoursConfig, start: datetime, duration: timedelta
) -> None:
    due = add_business_time(schedule, start, duration)
    assert due >= start
    # the open time between start and the result is exactly the duration
    assert business_time_between(schedule, start, due) == duration
    # the result is open or the boundary where an open range ends
    assert is_open(schedule, due) or is_open(schedule, due - timedelta(seconds=1))
    if duration:
        assert is_open(schedule, due - timedelta(seconds=1))


@given(st.sampled_from(SCHEDULE_CHOICES), instants)
def test_next_open_invariants(schedule: BusinessHoursConfig, at: datetime) -> None:
    opens = next_open(schedule, at)
    assert opens >= at
    assert is_open(schedule, opens)
    assert (opens == at) is is_open(schedule, at)
    assert business_time_between(schedule, at, opens) == timedelta(0)
    assert add_business_time(schedule, at, timedelta(0)) == opens


def test_hours_of_a_channel_are_its_own_else_the_sla_ones() -> None:
    text = """version: 1
channels:
  - {name: shop, type: webhook, business_hours: shop, webhook: {secret: "${S}"}}
  - {name: other, type: webhook, webhook: {secret: "${S}"}}
business_hours:
  shop: {timezone: Europe/Madrid, weekly: {mon: ["09:00-18:00"]}}
  office: {timezone: Europe/Madrid, weekly: {tue: ["09:00-18:00"]}}
sla: {business_hours: office}
"""
    config = parse_config(text, env={"S": "0123456789abcdef0123"})
    assert hours_of(config, "shop") == config.business_hours["shop"]
    assert hours_of(config, "other") == config.business_hours["office"]
    assert hours_of(config, "unknown") == config.business_hours["office"]
    without = parse_config(
        text.replace("sla: {business_hours: office}\n", ""), env={"S": "0123456789abcdef0123"}
    )
    assert hours_of(without, "other") is None
