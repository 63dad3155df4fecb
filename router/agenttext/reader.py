"""Who reads an agent-facing text, and how times are written for them (by Babel)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time, format_timedelta
from babel.lists import format_list

from router.agenttext.words import DEFAULT, WORDS

# Further ahead or back than this, a moment names its date, not only its weekday.
WEEK = 7


@dataclass(frozen=True, slots=True)
class Reader:
    """An agent as a reader: the language of the words (one `WORDS` has), the Babel
    locale of times and lists (the agent's own tag, so `es-MX` gets Mexico's), and
    their time zone (UTC, and said so, when theirs is not known)."""

    language: str
    locale: Locale
    zone: tzinfo
    zone_known: bool

    @classmethod
    def of(cls, language: str | None, timezone: str | None) -> Reader:
        """The reader of `language` (a BCP 47 tag) in `timezone` (an IANA name): one per
        pair, made once (each delivery asks; the moments it writes are remembered by it)."""
        return _reader(language, timezone)

    @classmethod
    def _made(cls, language: str | None, timezone: str | None) -> Reader:
        tag = (language or DEFAULT).replace("_", "-")
        words = tag.split("-", 1)[0].lower()
        if words not in WORDS:
            words, tag = DEFAULT, DEFAULT
        try:
            locale = Locale.parse(tag, sep="-")
        except (UnknownLocaleError, ValueError):
            locale = Locale.parse(words)
        zone: tzinfo = UTC
        known = False
        if timezone:
            try:
                zone, known = ZoneInfo(timezone), True
            except (ZoneInfoNotFoundError, ValueError):  # checked by the config; a stale record
                pass
        return cls(words, locale, zone, known)

    def word(self, key: str, **fields: object) -> str:
        text = WORDS[self.language].get(key) or WORDS[DEFAULT][key]
        return text.format(**fields) if fields else text

    def moment(self, at: datetime | str | None, now: datetime) -> str:
        """`at` in the reader's zone: the time alone today, with the weekday within a
        week, with the date further off: `10:05`, `jueves, 10:05`, `Thu, Dec 3, 4:05 AM`.
        An unreadable string is given back as it is (it is still information)."""
        if at is None:
            return ""
        moment = _aware(at)
        if moment is None:
            return str(at)
        if _to_the_minute(self.locale):  # every moment of a minute reads the same
            return _minute(self, int(moment.timestamp() // 60), int(now.timestamp() // 60))
        local, today = moment.astimezone(self.zone), now.astimezone(self.zone).date()
        return _moment(self, local, today)

    def day(self, at: datetime | str) -> str:
        """`at`'s date in the reader's zone: `Dec 2`, `2 dic`."""
        moment = _aware(at)
        if moment is None:
            return str(at)
        return format_skeleton("MMMd", moment.astimezone(self.zone), locale=self.locale)

    def relative(self, at: datetime | str, now: datetime) -> str:
        """How far `at` is from `now`: `in 55 minutes`, `hace 2 horas` ("" if unreadable)."""
        moment = _aware(at)
        if moment is None:
            return ""
        return _relative(self.locale, round((moment - now).total_seconds()))

    def answer_by(self, due: datetime | str, now: datetime) -> str:
        return self.word("answer_by", when=self.moment(due, now), relative=self.relative(due, now))

    def listing(self, items: list[str]) -> str:
        """`billing and refunds`, `billing y refunds`."""
        return format_list(items, locale=self.locale)

    def event(self, event: str) -> str:
        key = f"event.{event}"
        if key in WORDS[self.language]:
            return self.word(key)
        return event.replace("_", " ").capitalize()


@functools.lru_cache(maxsize=1024)
def _reader(language: str | None, timezone: str | None) -> Reader:
    return Reader._made(language, timezone)


# Babel takes about 50 µs to write a moment, and a delivery's summary writes a few;
# the same minute (an SLA due, a wait) comes up again and again, so each is written once.
@functools.lru_cache(maxsize=4096)
def _moment(reader: Reader, local: datetime, today: date) -> str:
    clock = format_time(local, "short", locale=reader.locale)
    days = abs((local.date() - today).days)
    if days == 0:
        text = clock
    else:
        if days < WEEK:
            day = format_date(local, "EEEE", locale=reader.locale)
        else:
            skeleton = "MMMEd" if local.year == today.year else "yMMMEd"
            day = format_skeleton(skeleton, local, locale=reader.locale)
        pattern = reader.locale.datetime_formats["short"]
        text = str(pattern).replace("{1}", day).replace("{0}", clock)
    return text if reader.zone_known else f"{text} UTC"


# A delivery writes a few moments (an SLA due, the transcript's times), mostly of minutes
# written before: looked up by the minutes of the moment and of now (since 1970), the
# lookup costs a third of moving both into the reader's zone and to the minute.
@functools.lru_cache(maxsize=4096)
def _minute(reader: Reader, at: int, now: int) -> str:
    local = datetime.fromtimestamp(at * 60, reader.zone)
    return _moment(reader, local, datetime.fromtimestamp(now * 60, reader.zone).date())


# Babel takes about 70 µs to say how far a moment is; a delivery says it of its SLA due,
# which is most often the same span from now (the channel's target), to the second.
@functools.lru_cache(maxsize=4096)
def _relative(locale: Locale, seconds: int) -> str:
    return format_timedelta(
        timedelta(seconds=seconds), add_direction=True, threshold=1, format="long", locale=locale
    )


@functools.lru_cache(maxsize=256)
def _to_the_minute(locale: Locale) -> bool:
    """Whether the locale's short time shows no seconds (CLDR's never do: checked, not assumed)."""
    return "s" not in str(locale.time_formats["short"].pattern).replace("'", "")


def _aware(at: datetime | str) -> datetime | None:
    """`at` as an aware datetime (a naive one is UTC, as we store them); None if unreadable."""
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
