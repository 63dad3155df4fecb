"""What agents read: times in their zone and language (Babel), and why they got it, in words."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router.agenttext import Reader, why_you
from router.agenttext.words import WORDS

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # a Tuesday
DUE = datetime(2026, 12, 3, 9, 5, 1, 279250, tzinfo=UTC)  # Thursday


@pytest.mark.parametrize(
    ("language", "zone", "expected"),
    [
        ("es", "Europe/Madrid", "Responder antes de: jueves, 10:05 (dentro de 2 días)"),
        ("en", "America/New_York", "Answer by Thursday, 4:05\u202fAM (in 2 days)"),
        (
            "es-MX",
            "America/Mexico_City",
            "Responder antes de: jueves, 3:05\u202fa.m. (dentro de 2 días)",
        ),
        # Unknown zone: UTC, said so. A language without words reads English.
        ("pt-BR", None, "Answer by Thursday, 9:05\u202fAM UTC (in 2 days)"),
        (None, "Not/AZone", "Answer by Thursday, 9:05\u202fAM UTC (in 2 days)"),
    ],
)
def test_the_due_time_is_in_the_agents_zone_and_language(
    language: str | None, zone: str | None, expected: str
) -> None:
    assert Reader.of(language, zone).answer_by(DUE, NOW) == expected


def test_a_moment_names_the_time_alone_today_the_weekday_this_week_the_date_further() -> None:
    es = Reader.of("es", "Europe/Madrid")
    assert es.moment(NOW + timedelta(hours=2), NOW) == "11:00"
    assert es.moment(DUE, NOW) == "jueves, 10:05"
    assert es.moment(DUE + timedelta(days=10), NOW) == "dom, 13 dic, 10:05"
    assert es.moment(datetime(2025, 3, 3, 11, tzinfo=UTC), NOW) == "lun, 3 mar 2025, 12:00"
    assert es.relative(NOW - timedelta(minutes=5), NOW) == "hace 5 minutos"
    en = Reader.of("en", "America/New_York")
    assert en.moment(DUE.isoformat(), NOW) == "Thursday, 4:05\u202fAM"  # as the context holds it
    assert en.moment("not a time", NOW) == "not a time"  # given back, not lost


def test_moments_written_once_read_right_for_every_reader_minute_and_day() -> None:
    # Each moment is written once and remembered: by reader, minute and the day it is
    # read on, never one for another.
    es, en = Reader.of("es", "Europe/Madrid"), Reader.of("en", None)
    for _ in range(2):
        assert es.moment(DUE, NOW) == "jueves, 10:05"
        assert es.moment(DUE + timedelta(seconds=58), NOW) == "jueves, 10:05"
        assert es.moment(DUE + timedelta(minutes=1), NOW) == "jueves, 10:06"
        assert es.moment(DUE, DUE) == "10:05"  # read on its own day
        assert en.moment(DUE, NOW) == "Thursday, 9:05\u202fAM UTC"


def test_no_raw_timestamp_is_written() -> None:
    for language, zone in (("es", "Europe/Madrid"), ("en", "America/New_York"), ("en", None)):
        text = Reader.of(language, zone).answer_by(DUE.isoformat(), NOW)
        assert not re.search(r"\d{4}-\d{2}-\d{2}|T\d{2}:|\.\d{6}|\+00:00", text), text


@pytest.mark.parametrize(
    ("reason", "en", "es"),
    [
        (
            {"rule": "best_available", "skills": {"billing": 2}, "occupancy": 0.1},
            "You have the billing skill and the lightest load",
            "Tienes la habilidad billing y además la menor carga",
        ),
        (
            {"rule": "best_available", "skills": {"billing": 2, "refunds": 1}},
            "You have the billing and refunds skills and the lightest load",
            "Tienes las habilidades billing y refunds y además la menor carga",
        ),
        (
            {"rule": "best_available", "skills": {}},
            "You had the lightest load",
            "Tenías la menor carga",
        ),
        (
            {"rule": "last_agent", "detail": "served this customer before"},
            "You spoke with this customer on Nov 30",
            "Hablaste con este cliente el 30 nov",
        ),
        (
            {"rule": "current_owner", "detail": "one conversation, one owner"},
            "This conversation is yours",
            "Esta conversación es tuya",
        ),
        ({"rule": "transfer", "from": "ben"}, "ben transferred it to you", "ben te la transfirió"),
        (
            {"rule": "sla_warning", "due": DUE.isoformat()},
            "You supervise the team, and the first answer is due Thursday, 9:05\u202fAM UTC",
            "Supervisas al equipo y la primera respuesta vence jueves, 9:05 UTC",
        ),
        (
            {"rule": "delivery_failed", "detail": "bot blocked"},
            "Your message did not reach the customer: bot blocked",
            "Tu mensaje no llegó al cliente: bot blocked",
        ),
        # A rule without words is shown as it is.
        ({"rule": "brand_new", "detail": "x"}, "brand new x", "brand new x"),
    ],
)
def test_why_you_in_words(reason: dict[str, Any], en: str, es: str) -> None:
    others = [
        {"owner": "ana", "updated_at": "2026-11-20T10:00:00+00:00"},
        {"owner": "ana", "updated_at": "2026-11-30T10:00:00+00:00"},  # the latest
        {"owner": "ben", "updated_at": "2026-12-01T07:00:00+00:00"},
    ]
    for language, expected in (("en", en), ("es", es)):
        reader = Reader.of(language, None)
        assert why_you(reader, reason, NOW, agent_id="ana", others=others) == expected


def test_last_agent_without_a_known_date_says_so_plainly() -> None:
    reader = Reader.of("en", None)
    assert why_you(reader, {"rule": "last_agent"}, NOW, agent_id="ana") == (
        "You have served this customer before"
    )


def test_every_language_has_every_word_with_the_same_placeholders() -> None:
    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    english = WORDS["en"]
    for language, words in WORDS.items():
        assert words.keys() == english.keys(), language
        for key, text in words.items():
            assert fields(text) == fields(english[key]), (language, key)


def test_open_promises_are_listed_in_the_agent_s_words_and_zone() -> None:
    from router.agenttext import promises_owed

    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    promises = [
        {"id": 4, "text": "call back", "due": "2026-03-02T16:00:00+00:00", "state": "open"},
        {"id": 5, "text": "send it", "due": "2026-03-02T12:00:00+00:00", "state": "kept"},
    ]
    madrid = Reader.of("es", "Europe/Madrid")
    assert promises_owed(madrid, promises, now) == ["Prometido (#4), para 17:00: call back"]
    assert promises_owed(Reader.of("en", "UTC"), promises, now) == [
        "Promised (#4), due 4:00\u202fPM: call back"
    ]
    assert promises_owed(madrid, None, now) == []
