from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from router.config.loader import check
from router.routing.templates import describe_moment, describe_wait, render
from tests.router.routing.office import OFFICE, scenario
from tests.router.routing.scenarios import mail

TEMPLATES = {
    "ack": {
        "en": "Hi {customer_name}, we will answer {expected_response}. Ref {conversation_ref}.",
        "es": "Hola {customer_name}, te responderemos {expected_response}.",
        "pt": "Olá {customer_name}.",
    },
    "on_it": {"en": "We are on it{agent_name}."},
}


@pytest.mark.parametrize(
    ("name", "language", "expected"),
    [
        ("ack", "es", ("es", "Hola Ana, te responderemos en 5 minutos.")),
        ("ack", "en", ("en", "Hi Ana, we will answer en 5 minutos. Ref .")),
        ("ack", "pt-BR", ("pt", "Olá Ana.")),
        ("ack", "fr", ("en", "Hi Ana, we will answer en 5 minutos. Ref .")),
        ("on_it", "es", ("en", "We are on it.")),
    ],
)
def test_render(name: str, language: str, expected: tuple[str, str]) -> None:
    fields = {"customer_name": "Ana", "expected_response": "en 5 minutos"}
    assert render(TEMPLATES, name, language, default_language="en", **fields) == expected


def test_render_unknown_template() -> None:
    with pytest.raises(KeyError, match="no template named 'bye'"):
        render(TEMPLATES, "bye", "en", default_language="en")
    with pytest.raises(KeyError, match="neither 'es' nor the default language 'de'"):
        render(TEMPLATES, "on_it", "es", default_language="de")


def test_render_does_not_reinterpret_field_values() -> None:
    _, text = render(TEMPLATES, "on_it", "en", default_language="en", agent_name=", {x} Bo")
    assert text == "We are on it, {x} Bo."


MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2025, 11, 7, 10, 0, tzinfo=MADRID)  # a Friday


@pytest.mark.parametrize(
    ("wait", "en", "es"),
    [
        (timedelta(0), "within 1 minute", "en menos de 1 minuto"),
        (timedelta(seconds=-30), "within 1 minute", "en menos de 1 minuto"),
        (timedelta(seconds=61), "within 2 minutes", "en menos de 2 minutos"),
        (timedelta(minutes=3), "within 5 minutes", "en menos de 5 minutos"),
        (timedelta(minutes=5), "within 5 minutes", "en menos de 5 minutos"),
        (timedelta(minutes=11), "within 15 minutes", "en menos de 15 minutos"),
        (timedelta(minutes=30), "within 30 minutes", "en menos de 30 minutos"),
        (timedelta(minutes=45), "within 1 hour", "en menos de 1 hora"),
        (timedelta(minutes=61), "within 2 hours", "en 2 horas"),
        (timedelta(hours=7, minutes=59), "within 8 hours", "en 8 horas"),
        (timedelta(hours=23), "by tomorrow 09:00", "mañana a las 09:00"),
        (timedelta(days=3, hours=-0.5), "by Monday 09:30", "el lunes a las 09:30"),
        (timedelta(days=5), "by Wednesday 10:00", "el miércoles a las 10:00"),
        (timedelta(days=10, hours=-9), "by 17 November 01:00", "el 17 de noviembre a la 01:00"),
    ],
)
def test_describe_wait(wait: timedelta, en: str, es: str) -> None:
    due = (NOW.astimezone(UTC) + wait).astimezone(MADRID)
    assert describe_wait(due, NOW, "en") == en
    assert describe_wait(due, NOW, "es-MX") == es
    assert describe_wait(due, NOW, "de") == en  # other languages: English


def test_describe_wait_reads_days_in_the_given_zone() -> None:
    due = datetime(2025, 11, 10, 8, 30, tzinfo=UTC)  # Monday 09:30 in Madrid
    now = datetime(2025, 11, 7, 9, 0, tzinfo=UTC)
    assert describe_wait(due, now, "en", tz="Europe/Madrid") == "by Monday 09:30"
    assert describe_wait(due, now, "en", tz="America/New_York") == "by Monday 03:30"
    assert describe_wait(due, now, "es") == "el lunes a las 08:30"  # due's own zone (UTC)


def test_describe_wait_across_dst_counts_real_time() -> None:
    # 2026-03-29 01:30 CET to 03:30 CEST is one real hour
    now = datetime(2026, 3, 29, 1, 30, tzinfo=MADRID)
    due = datetime(2026, 3, 29, 3, 30, tzinfo=MADRID)
    assert describe_wait(due, now, "en") == "within 1 hour"


def test_describe_wait_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        describe_wait(datetime(2025, 1, 1), NOW, "en")


@pytest.mark.parametrize(
    ("at", "en", "es"),
    [
        (NOW, "now", "ahora"),
        (NOW - timedelta(minutes=5), "now", "ahora"),
        (NOW.replace(hour=15), "today at 15:00", "hoy a las 15:00"),
        (NOW + timedelta(days=1, hours=-1), "tomorrow at 09:00", "mañana a las 09:00"),
        (datetime(2025, 11, 10, 9, 0, tzinfo=MADRID), "on Monday at 09:00", "el lunes a las 09:00"),
        (datetime(2025, 11, 8, 1, 30, tzinfo=MADRID), "tomorrow at 01:30", "mañana a la 01:30"),
        (datetime(2025, 11, 17, 9, 0, tzinfo=MADRID), "on 17 November at 09:00",
         "el 17 de noviembre a las 09:00"),
    ],
)  # fmt: skip
def test_describe_moment(at: datetime, en: str, es: str) -> None:
    assert describe_moment(at, NOW, "en") == en
    assert describe_moment(at, NOW, "es-ES") == es
    assert describe_moment(at, NOW, "fr") == en  # other languages: English


def test_describe_moment_reads_the_given_zone() -> None:
    at = datetime(2025, 11, 10, 8, 0, tzinfo=UTC)  # Monday 09:00 in Madrid
    assert describe_moment(at, NOW, "en", tz="Europe/Madrid") == "on Monday at 09:00"
    assert describe_moment(at, NOW, "en", tz="America/New_York") == "on Monday at 03:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        describe_moment(datetime(2025, 1, 1), NOW, "en")


OPENING = """\
  ack:
    en: "We open {opens_at}; we will answer {expected_response} ({due_at})."
    es: "Abrimos {opens_at}; te responderemos {expected_response} ({due_at})."
"""


def office_with(templates: str) -> str:
    text = OFFICE.read_text(encoding="utf-8")
    start = text.index("  ack:\n")
    return text[:start] + templates + text[text.index("  on_it:\n") :]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, I have a question about my order",
         "We open tomorrow at 09:00; we will answer by tomorrow 17:00 (tomorrow at 17:00)."),
        ("Hola, tengo una pregunta sobre mi pedido de ayer",
         "Abrimos mañana a las 09:00; te responderemos mañana a las 17:00"
         " (mañana a las 17:00)."),
    ],
)  # fmt: skip
async def test_acknowledgement_names_the_next_opening_in_the_customers_language(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "opening.yaml"
    config.write_text(office_with(OPENING), encoding="utf-8")
    # Sunday 20:00 in Madrid: closed; office hours open Monday 09:00, and the
    # 8-hour email target (open time) ends Monday 17:00.
    async with scenario(tmp_path, "2026-03-08T20:00:00+01:00", config) as run:
        await run.step(**mail("eva@shop.test", "<t1@x>", text))
        [ack] = run.out("outbound.mail")
        assert ack.text == expected


def test_check_accepts_the_time_placeholders_and_refuses_unknown_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(office_with(OPENING), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check(good, {}, out=out, err=err) == 0, err.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text(office_with('  ack:\n    en: "We open {opening}."\n'), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check(bad, {}, out=out, err=err) == 2
    assert "unknown placeholder {opening}" in err.getvalue()
    assert "{opens_at}" in err.getvalue() and "{due_at}" in err.getvalue()
