"""Customer-facing messages: templates in the customer's language, and wait phrases.

`render` fills a configured template; `describe_wait` writes the promise that
goes in its `{expected_response}`: plain, positive, and never more precise
than we can keep ("within 5 minutes", "within 2 hours", "by Monday 09:30").
`describe_moment` names a moment for `{opens_at}` and `{due_at}` ("tomorrow
at 09:00", "el lunes a las 09:00"), so a template can say when we open.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date

from router.routing.language import primary

# Promises under an hour are rounded up to one of these (minutes).
MINUTE_STEPS = (1, 2, 5, 10, 15, 30)


class _Blank(dict[str, str]):
    """Format fields: a missing one renders as an empty string."""

    def __missing__(self, key: str) -> str:
        return ""


def render(
    templates: Mapping[str, Mapping[str, str]],
    name: str,
    language: str,
    *,
    default_language: str,
    **fields: str,
) -> tuple[str, str]:
    """(language used, text) of template `name` in `language`, else in `default_language`.

    `pt-BR` falls back to `pt` before the default. Missing fields render as
    empty strings. An unknown template name, or one with neither language, is
    a `KeyError` (config validation prevents both).
    """
    used = template_language(templates, name, language, default_language=default_language)
    return used, templates[name][used].format_map(_Blank(fields))


def template_language(
    templates: Mapping[str, Mapping[str, str]], name: str, language: str, *, default_language: str
) -> str:
    """The language `render` writes template `name` in for `language` (see there)."""
    try:
        versions = templates[name]
    except KeyError:
        known = ", ".join(sorted(templates)) or "none"
        raise KeyError(f"no template named {name!r} (known: {known})") from None
    for candidate in (language, primary(language), default_language):
        if candidate in versions:
            return candidate
    raise KeyError(
        f"template {name!r} has neither {language!r} nor the default language {default_language!r}"
    )


def _weekday(at: datetime, lang: str) -> str:
    """`Monday`, `lunes`: Babel's (CLDR) name, not a table of ours."""
    return format_date(at, "EEEE", locale=lang)


def _day_month(at: datetime, lang: str) -> str:
    """`12 January`, `12 de enero`."""
    month = format_date(at, "MMMM", locale=lang)
    return f"{at.day} de {month}" if lang == "es" else f"{at.day} {month}"


def describe_wait(due: datetime, now: datetime, language: str, *, tz: str | None = None) -> str:
    """The expected-response phrase for `due`, seen from `now`, in English or Spanish.

    Under an hour: "within 5 minutes" (rounded up to 1, 2, 5, 10, 15, 30
    minutes, else "within 1 hour"); later the same day: "within 2 hours"
    (rounded up); tomorrow: "by tomorrow 09:30"; within a week: "by Monday
    09:30"; further: "by 12 January 09:30". Days and times are read in `tz`
    (default: `due`'s own zone). Languages other than Spanish get English.
    """
    if due.tzinfo is None or now.tzinfo is None:
        raise ValueError("due and now must be timezone-aware")
    lang = "es" if primary(language) == "es" else "en"
    zone = ZoneInfo(tz) if tz is not None else due.tzinfo
    wait = max(due.astimezone(UTC) - now.astimezone(UTC), timedelta(0))
    local_due, local_now = due.astimezone(zone), now.astimezone(zone)

    if wait <= timedelta(hours=1):
        minutes = math.ceil(wait / timedelta(minutes=1))
        step = next((s for s in MINUTE_STEPS if minutes <= s), None)
        if step is None:
            return "en menos de 1 hora" if lang == "es" else "within 1 hour"
        if lang == "es":
            return f"en menos de {step} minuto{'s' if step > 1 else ''}"
        return f"within {step} minute{'s' if step > 1 else ''}"

    days_ahead = (local_due.date() - local_now.date()).days
    if days_ahead <= 0:
        hours = math.ceil(wait / timedelta(hours=1))
        if lang == "es":
            return f"en {hours} hora{'s' if hours > 1 else ''}"
        return f"within {hours} hour{'s' if hours > 1 else ''}"

    clock = f"{local_due:%H:%M}"
    if lang == "es":
        at = f"a la {clock}" if local_due.hour == 1 else f"a las {clock}"
        if days_ahead == 1:
            return f"mañana {at}"
        if days_ahead < 7:
            return f"el {_weekday(local_due, lang)} {at}"
        return f"el {_day_month(local_due, lang)} {at}"
    if days_ahead == 1:
        return f"by tomorrow {clock}"
    if days_ahead < 7:
        return f"by {_weekday(local_due, lang)} {clock}"
    return f"by {_day_month(local_due, lang)} {clock}"


def describe_moment(at: datetime, now: datetime, language: str, *, tz: str | None = None) -> str:
    """`at` seen from `now`, in English or Spanish: "now", "today at 15:00",
    "tomorrow at 09:00", "on Monday at 09:00", "on 12 January at 09:00".

    A moment not after `now` is "now" ("ahora"). Days and times are read in
    `tz` (default: `at`'s own zone). Languages other than Spanish get English.
    """
    if at.tzinfo is None or now.tzinfo is None:
        raise ValueError("at and now must be timezone-aware")
    lang = "es" if primary(language) == "es" else "en"
    if at.astimezone(UTC) <= now.astimezone(UTC):
        return "ahora" if lang == "es" else "now"
    zone = ZoneInfo(tz) if tz is not None else at.tzinfo
    local, local_now = at.astimezone(zone), now.astimezone(zone)
    days_ahead = (local.date() - local_now.date()).days
    clock = f"{local:%H:%M}"
    if lang == "es":
        hour = f"a la {clock}" if local.hour == 1 else f"a las {clock}"
        if days_ahead == 0:
            return f"hoy {hour}"
        if days_ahead == 1:
            return f"mañana {hour}"
        if days_ahead < 7:
            return f"el {_weekday(local, lang)} {hour}"
        return f"el {_day_month(local, lang)} {hour}"
    if days_ahead == 0:
        return f"today at {clock}"
    if days_ahead == 1:
        return f"tomorrow at {clock}"
    if days_ahead < 7:
        return f"on {_weekday(local, lang)} at {clock}"
    return f"on {_day_month(local, lang)} at {clock}"
