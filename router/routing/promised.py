"""What an agent's promise says: its due time read from their words, when to remind
them, how it shows in a delivery and in the customer's update. Pure: time is a parameter.

A due time is written as the first word(s) of `promise <due> <what was promised>`,
read in the agent's time zone and on their schedule:

- `17:00`: today at 17:00, or, once that has passed, at 17:00 on the agent's next
  working day (the next day without a schedule);
- `3h`, `45m`, `1h30m`: that much of the agent's open time (`add_business_time`):
  `3h` at Friday 17:00 on a 09:00-18:00 week is Monday 11:00;
- `2d`: the same time of day on the second working day from now (from the next
  opening when said after hours): `2d` on Friday 10:00 is Tuesday 10:00. Days
  are working days, not 24 hours of open time (which, on an eight-hour day,
  would be three days each);
- `2026-03-03T17:00` or `2026-03-03 17:00` (ISO 8601): that moment, in the
  agent's time zone unless it names its own offset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from router.config.people import BusinessHoursConfig
from router.routing.hours import add_business_time, business_time_between, next_open
from router.routing.language import primary
from router.routing.templates import describe_moment

# A promise is about this conversation, in words: bounded like a note's first line.
TEXT_LIMIT = 500
# How far ahead a promise may fall due: further is a typo more often than a plan.
HORIZON = timedelta(days=366)
# Open promises one conversation may hold; past that an agent's tool is looping.
OPEN_LIMIT = 20
# The reminder comes at the later of `remind_before` the due time and this share
# of the time given: a 20-minute promise is not reminded of as it is made.
REMIND_SHARE = 0.8
USAGE = "usage: promise <17:00 | 3h | 2d | 2026-03-03T17:00> <what you promised>"

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_SPAN = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# A promise that fell due unkept, told to the customer when no template is configured.
BROKEN_TEXT = {
    "en": "Hello {customer_name}, we promised you \u201c{promise}\u201d by {promise_due}, and"
    " we have not managed it yet. We are still on it and will write to you as soon as it"
    " is done (ref. {conversation_ref}).",
    "es": "Hola {customer_name}, te prometimos \u00ab{promise}\u00bb para {promise_due} y"
    " todav\u00eda no lo hemos conseguido. Seguimos con ello y te escribiremos en cuanto"
    " est\u00e9 hecho (ref. {conversation_ref}).",
}


class PromiseError(ValueError):
    """A `promise` or `kept` that cannot be applied; the message says why (to the agent),
    `code` what kind of refusal it is (for the log)."""

    def __init__(self, why: str, code: str = "promise_usage") -> None:
        super().__init__(why)
        self.code = code


def parse(
    words: str, now: datetime, zone: str, hours: BusinessHoursConfig | None
) -> tuple[datetime, str]:
    """(due time in UTC, what was promised) from `<due> <text>`; `PromiseError` if not."""
    parts = words.split(maxsplit=1)
    if len(parts) < 2:
        raise PromiseError(USAGE)
    first, text = parts
    if _DATE.match(first):  # `2026-03-03 17:00 ...`: the time is the next word
        more = text.split(maxsplit=1)
        if len(more) < 2 or not _CLOCK.match(more[0]):
            raise PromiseError(f"{first}: give a time too ({USAGE})")
        first, text = f"{first}T{more[0]}", more[1]
    text = text.strip()
    if len(text) > TEXT_LIMIT:
        raise PromiseError(f"promise too long ({len(text)} characters; at most {TEXT_LIMIT})")
    try:
        due = due_at(first, now, zone, hours)
    except PromiseError:
        raise
    except (ValueError, OverflowError) as exc:  # a schedule that never opens, a far date
        raise PromiseError(f"{first}: {exc}") from None
    if due <= now:
        raise PromiseError(f"{first}: that is not in the future")
    if due - now > HORIZON:
        raise PromiseError(f"{first}: more than a year ahead")
    return due.astimezone(UTC), text


def due_at(when: str, now: datetime, zone: str, hours: BusinessHoursConfig | None) -> datetime:
    """The moment `when` names (see the module's doc), seen from `now`."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if m := _CLOCK.match(when):
        at = time(int(m.group(1)), int(m.group(2)))
        due = _at(local.date(), at, tz)
        day = local.date()
        while due <= now:
            day = _next_working_day(day, tz, hours)
            due = _at(day, at, tz)
        return due
    if (m := _SPAN.match(when.lower())) and any(m.groups()):
        days, h, mins = (int(g) if g else 0 for g in m.groups())
        span = timedelta(hours=h, minutes=mins)
        # Bounded before counting: on a schedule open one hour a week, 9999h of open
        # time is two centuries of weeks to walk through.
        if days > HORIZON.days or span > HORIZON:
            raise PromiseError(f"{when}: more than a year ahead")
        start = now
        if days:
            start = _working_days_later(now, days, tz, hours)
        if business_time_between(hours, start, now + HORIZON) < span:
            raise PromiseError(f"{when}: more than a year ahead")
        return add_business_time(hours, start, span)
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise PromiseError(f"{when!r} is not a due time ({USAGE})") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _at(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _next_working_day(day: date, tz: ZoneInfo, hours: BusinessHoursConfig | None) -> date:
    day += timedelta(days=1)
    if hours is not None:
        # `next_open` raises on hours that never open, so this ends.
        day = next_open(hours, _at(day, time(0), tz)).astimezone(tz).date()
    return day


def _working_days_later(
    now: datetime, days: int, tz: ZoneInfo, hours: BusinessHoursConfig | None
) -> datetime:
    """The same time of day `days` working days after `now` (from the next opening)."""
    if hours is None:
        return now + timedelta(days=days)
    start = next_open(hours, now).astimezone(tz)
    day = start.date()
    for _ in range(days):
        day = _next_working_day(day, tz, hours)
    due = _at(day, start.timetz().replace(tzinfo=None), tz)
    # A shorter day may be closed at that time: then its next opening.
    return next_open(hours, due)


def remind_at(made: datetime, due: datetime, before: timedelta) -> datetime:
    """When the owner is reminded: `before` the due time, or at `REMIND_SHARE` of the
    time given when that is later."""
    return max(due - before, made + (due - made) * REMIND_SHARE)


def entry(row: Any, owner: str | None) -> dict[str, Any]:
    """A promise as a delivery's context shows it (`owner`: who must keep it now)."""
    return {
        "id": row.id,
        "text": row.text,
        "due": row.due_at.isoformat(),
        "made_by": row.made_by,
        "made_at": row.made_at.isoformat(),
        "owner": owner,
        "state": row.state,
        "closed_at": row.closed_at.isoformat() if row.closed_at else None,
    }


def due_phrase(due: datetime, now: datetime, language: str, zone: str | None) -> str:
    """When a promise was due, in the customer's words: "today at 17:00", or with its
    date when that was another day ("on 2 March at 17:00")."""
    tz = ZoneInfo(zone) if zone else UTC
    same_day = due.astimezone(tz).date() == now.astimezone(tz).date()
    # Seen from just before it (today) or from over a week before (its date).
    seen_from = due - (timedelta(seconds=1) if same_day else timedelta(days=8))
    return describe_moment(due, seen_from, language, tz=zone)


def builtin_text(language: str, fields: Mapping[str, str]) -> tuple[str, str]:
    """(language, text) of the built-in update for a broken promise: Spanish or English."""
    lang = "es" if primary(language) == "es" else "en"
    return lang, BROKEN_TEXT[lang].format(**fields)
