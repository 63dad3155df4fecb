from __future__ import annotations

import io
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.config.routing import RoutingConfig
from router.envelope import Envelope, Sender
from router.errors import ConfigError
from router.routing.classify import Classification, CustomerFacts, classify, find_keyword, fold

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LANGS = ("en", "es")
NOBODY = CustomerFacts()


class Fixed:
    """A detector that always answers the same (None: unsure)."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def detect(self, text: str, languages: Collection[str]) -> str | None:
        self.calls.append((text, tuple(languages)))
        return self.answer


def message(text: str = "", subject: str | None = None, **kw: Any) -> Envelope:
    channel_type = kw.pop("channel_type", "email")
    return Envelope(
        id="e1",
        kind="message",
        direction="in",
        channel=kw.pop("channel", f"support-{channel_type}"),
        channel_type=channel_type,
        thread_key="t1",
        sender=Sender(address="ana@example.com"),
        received_at=NOW,
        subject=subject,
        text=text,
    )


def shipped_routing() -> RoutingConfig:
    path = Path(__file__).parents[3] / "config" / "channels.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return RoutingConfig.model_validate(data["routing"])


SHIPPED = shipped_routing()


def run(
    env: Envelope,
    routing: RoutingConfig = SHIPPED,
    customer: CustomerFacts = NOBODY,
    language: str | None = "en",
) -> Classification:
    return classify(env, customer, routing, languages=LANGS, now=NOW, detector=Fixed(language))


@pytest.mark.parametrize(
    ("text", "subject", "language", "rules", "queue", "skills"),
    [
        ("Where is my invoice?", None, "en", ("billing",), "billing", {"billing": 2}),
        ("Hello", "REFUND", "en", ("billing",), "billing", {"billing": 2}),
        # whole words only: "prepayment" is not "payment", "charger" not "charge"
        ("My charger is a prepayment model", None, "en", (), "general", {}),
        # accent-insensitive both ways
        ("Quiero un Reembolso ya", None, "es", ("billing", "spanish"), "billing",
         {"billing": 2, "spanish": 3}),
        ("La app no funciona", None, "es", ("tech", "spanish"), "tech",
         {"tech": 2, "spanish": 3}),
        ("The app CRASHED twice", None, "en", ("tech",), "tech", {"tech": 2}),
        # later rules override the queue; skills merge
        ("Payment error on checkout", None, "en", ("billing", "tech"), "tech",
         {"billing": 2, "tech": 2}),
        ("Good morning", None, "en", (), "general", {}),
    ],
)  # fmt: skip
def test_shipped_rules(
    text: str,
    subject: str | None,
    language: str,
    rules: tuple[str, ...],
    queue: str,
    skills: dict[str, int],
) -> None:
    result = run(message(text, subject), language=language)
    assert result.rules == rules
    assert result.queue == queue
    assert dict(result.skills) == skills
    assert result.language == language
    assert not result.complaint


@pytest.mark.parametrize(
    ("keyword", "text", "hit"),
    [
        ("devolución", "Quiero una devolucion", True),
        ("devolucion", "Quiero una DEVOLUCIÓN", True),
        ("reembolso", "Reembolso, por favor", True),
        ("speak to a manager", "I want to SPEAK  TO\na manager now", True),
        ("speak to a manager", "speak to a managers", False),
        ("pago", "pagos", False),
        ("pago", "el pago.", True),
        ("c++", "I use C++ daily", True),
        ("naïve", "so naive", True),
    ],
)
def test_keywords_are_whole_words_without_case_or_accents(
    keyword: str, text: str, hit: bool
) -> None:
    routing = RoutingConfig.model_validate(
        {"rules": [{"name": "r", "match": {"keywords": [keyword]}, "then": {"tags": ["x"]}}]}
    )
    assert (run(message(text), routing).rules == ("r",)) is hit


def test_regex_matches_accent_free_form() -> None:
    routing = RoutingConfig.model_validate(
        {"rules": [{"name": "r", "match": {"regex": r"\bdevolucion\b"}, "then": {}}]}
    )
    result = run(message("Mi devolución"), routing)
    assert result.rules == ("r",)
    assert "regex" in result.reasons[1]


def test_rule_order_override_and_stop() -> None:
    routing = RoutingConfig.model_validate(
        {
            "default_queue": "general",
            "default_priority": "low",
            "rules": [
                {"name": "a", "match": {}, "then": {"skills": {"x": 2}, "queue": "qa",
                 "priority": "high", "tags": ["one"]}},
                {"name": "b", "match": {"channel_type": "email"},
                 "then": {"skills": {"x": 1, "y": 3}, "queue": "qb", "tags": ["two", "one"]},
                 "stop": True},
                {"name": "c", "match": {}, "then": {"queue": "qc", "priority": "urgent"}},
            ],
        }
    )  # fmt: skip
    result = run(message("hi"), routing)
    assert result.rules == ("a", "b")
    assert dict(result.skills) == {"x": 2, "y": 3}
    assert result.queue == "qb"
    assert result.priority == "high"
    assert result.tags == ("one", "two")
    assert "rule b stops further rules" in result.reasons
    # not an email: b does not match, so c runs
    chat = run(message("hi", channel_type="webchat"), routing)
    assert chat.rules == ("a", "c")
    assert chat.queue == "qc"
    assert chat.priority == "urgent"


@pytest.mark.parametrize(
    ("match", "customer", "hit"),
    [
        ({"tier": ["gold"]}, CustomerFacts(tier="gold"), True),
        ({"tier": ["gold"]}, CustomerFacts(tier="silver"), False),
        ({"tier": ["gold"]}, CustomerFacts(), False),
        ({"tags": ["vip", "press"]}, CustomerFacts(tags=frozenset({"press"})), True),
        ({"tags": ["vip"]}, CustomerFacts(tags=frozenset({"new"})), False),
        ({"channel": ["support-email"]}, NOBODY, True),
        ({"channel": ["site-chat"]}, NOBODY, False),
        ({"channel_type": ["email"], "tier": ["gold"]}, CustomerFacts(tier="gold"), True),
        ({"channel_type": ["phone"], "tier": ["gold"]}, CustomerFacts(tier="gold"), False),
        ({"language": ["en"]}, NOBODY, True),
        ({"language": ["es"]}, NOBODY, False),
    ],
)
def test_conditions(match: dict[str, Any], customer: CustomerFacts, hit: bool) -> None:
    routing = RoutingConfig.model_validate({"rules": [{"name": "r", "match": match, "then": {}}]})
    assert (run(message("hi"), routing, customer).rules == ("r",)) is hit


def test_vip_and_phone_rules_raise_priority() -> None:
    gold = CustomerFacts(tier="gold")
    result = run(message("hello there"), customer=gold)
    assert (result.priority, result.tags) == ("high", ("vip",))
    assert run(message("missed call", channel_type="phone")).priority == "high"
    assert run(message("hello")).priority == "normal"


@pytest.mark.parametrize(
    ("text", "detected", "keyword"),
    [
        ("This is unacceptable", "en", "unacceptable"),
        # checked in every language, not only the detected one
        ("Esto es inaceptable", "en", "inaceptable"),
        ("Quiero la hoja de reclamaciones", None, "hoja de reclamaciones"),
        ("Quiero poner una reclamacion", "es", "reclamación"),
        ("PÉSIMO SERVICIO", "es", "pésimo servicio"),
    ],
)
def test_complaints(text: str, detected: str | None, keyword: str) -> None:
    result = run(message(text), language=detected)
    assert result.complaint
    assert result.skills["complaints"] == 3
    assert result.priority == "high"
    assert "complaint" in result.tags
    assert any(r.startswith(f"complaint keyword {keyword!r}") for r in result.reasons)


def test_complaint_keeps_higher_priority_and_skill_level() -> None:
    routing = RoutingConfig.model_validate(
        {
            "rules": [
                {"name": "r", "match": {}, "then": {"priority": "urgent",
                 "skills": {"complaints": 5}, "tags": ["complaint"]}, "stop": True},
            ],
            "complaints": {"keywords": {"en": ["awful"]}, "priority": "high", "min_level": 3},
        }
    )  # fmt: skip
    result = run(message("awful"), routing)
    assert result.complaint
    assert result.priority == "urgent"  # never lowered
    assert dict(result.skills) == {"complaints": 5}
    assert result.tags == ("complaint",)


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("This is unacceptable", "unacceptable"),
        ("I want to speak to a manager", "speak to a manager"),
        ("Es inaceptable, quiero poner una queja", "inaceptable"),
        ("Quiero la hoja de reclamaciones", "hoja de reclamaciones"),
    ],
)
def test_complaint_vocabulary_is_shipped_in_english_and_spanish(text: str, keyword: str) -> None:
    # No routing.complaints configured at all: the shipped words still detect.
    result = run(message(text), RoutingConfig())
    assert result.complaint
    assert any(r.startswith(f"complaint keyword {keyword!r}") for r in result.reasons)


def test_complaint_extra_keywords_extend_and_keywords_replace_the_shipped_ones() -> None:
    extended = RoutingConfig.model_validate(
        {"complaints": {"extra_keywords": {"en": ["chargeback"], "fr": ["plainte"]}}}
    )
    assert run(message("I will file a chargeback"), extended).complaint
    assert run(message("Je dépose une plainte"), extended).complaint
    assert run(message("unacceptable"), extended).complaint  # the shipped words stay
    replaced = RoutingConfig.model_validate({"complaints": {"keywords": {"en": ["awful"]}}})
    assert run(message("awful"), replaced).complaint
    assert not run(message("unacceptable"), replaced).complaint
    off = RoutingConfig.model_validate({"complaints": {"keywords": {}}})
    assert not run(message("unacceptable, queja"), off).complaint


def test_language_fallbacks() -> None:
    routing = RoutingConfig(default_language="es")
    unsure = Fixed(None)
    # detected
    assert (
        classify(
            message("hi"), NOBODY, routing, languages=LANGS, now=NOW, detector=Fixed("en")
        ).language
        == "en"
    )
    # unsure: the customer's known language
    known = CustomerFacts(language="en")
    result = classify(message("ok"), known, routing, languages=LANGS, now=NOW, detector=unsure)
    assert result.language == "en"
    assert "earlier messages" in result.reasons[0]
    # unsure and unknown: the default
    result = classify(message("ok"), NOBODY, routing, languages=LANGS, now=NOW, detector=unsure)
    assert result.language == "es"
    assert "by default" in result.reasons[0]
    # the detector is given subject and text, and the configured languages
    assert unsure.calls[0] == ("ok", LANGS)
    # nothing to read: the detector is not asked
    empty = Fixed("en")
    classify(message(""), NOBODY, routing, languages=LANGS, now=NOW, detector=empty)
    assert empty.calls == []


def test_default_detector_is_used() -> None:
    env = message("Hola, mi pedido no ha llegado todavía y necesito ayuda")
    result = classify(env, NOBODY, SHIPPED, languages=LANGS, now=NOW)
    assert result.language == "es"
    assert "spanish" in result.rules


def test_reasons_explain_every_match() -> None:
    result = run(message("This is unacceptable: refund now"), customer=CustomerFacts(tier="gold"))
    assert result.reasons == (
        "language en detected",
        "rule billing matched keyword 'refund'",
        "rule vip matched tier gold",
        "complaint keyword 'unacceptable' (en)",
    )
    assert result.rules == ("billing", "vip")
    assert result.priority == "high"


def test_fold() -> None:
    assert fold("Devolución ÀÉÎÕÜ Straße") == "devolucion aeiou strasse"


@pytest.mark.parametrize(
    ("keywords", "text", "expected"),
    [
        (["refund", "refund now"], "I want a REFUND  now", "refund now"),
        (["refund", "refund now"], "refund please", "refund"),
        (["queja", "abogado"], "llamaré a mi abogado, es una queja", "abogado"),
        (["", "  "], "anything", None),
    ],
)
def test_find_keyword_reports_the_phrase_found(
    keywords: list[str], text: str, expected: str | None
) -> None:
    assert find_keyword(keywords, fold(text)) == expected


def test_during_and_outside_business_hours_conditions() -> None:
    from router.config import parse_config

    config = parse_config(
        "version: 1\n"
        "business_hours:\n"
        "  office: {timezone: Europe/Madrid, weekly: {mon: ['09:00-18:00']}}\n"
        "queues: [{name: night}, {name: day}]\n"
        "routing:\n"
        "  rules:\n"
        "    - {name: nights, match: {outside: office}, then: {queue: night}}\n"
        "    - {name: days, match: {during: office}, then: {queue: day, tags: [office]}}\n",
        env={},
    )
    env = message(text="hello there, my order")
    monday_noon = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 12:00 in Madrid
    monday_night = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    day = classify(
        env,
        CustomerFacts(),
        config.routing,
        languages=["en"],
        now=monday_noon,
        hours=config.business_hours,
    )
    night = classify(
        env,
        CustomerFacts(),
        config.routing,
        languages=["en"],
        now=monday_night,
        hours=config.business_hours,
    )
    assert (day.queue, day.rules) == ("day", ("days",))
    assert "rule days matched during office hours" in day.reasons
    assert (night.queue, night.rules) == ("night", ("nights",))


def test_unknown_business_hours_in_a_rule_is_a_config_error() -> None:
    from router.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"routing.rules\[0\].match.during"):
        parse_config(
            "version: 1\nrouting:\n  rules:\n    - {name: r, match: {during: nope}, then: {}}\n",
            env={},
        )


def test_shipped_complaint_words_apply_where_the_complaint_skill_is_defined(
    tmp_path: Path,
) -> None:
    from router.config import parse_config
    from router.config.loader import check

    with_skill = parse_config("version: 1\nskills: [{name: complaints}]\n", env={})
    assert sorted(with_skill.routing.complaints.vocabulary()) == ["en", "es"]
    # Nobody could be qualified for a complaint: the shipped words are off, and check says so.
    assert parse_config("version: 1\n", env={}).routing.complaints.vocabulary() == {}
    bare = tmp_path / "bare.yaml"
    bare.write_text("version: 1\n", encoding="utf-8")
    out = io.StringIO()
    assert check(bare, {}, out=out, err=io.StringIO()) == 0
    assert "complaints: off (no skill 'complaints')" in out.getvalue()
    # Words the operator gives still need the skill.
    with pytest.raises(ConfigError, match="skill 'complaints' is not defined"):
        parse_config("version: 1\nrouting: {complaints: {extra_keywords: {en: [awful]}}}\n", env={})
