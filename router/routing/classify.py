"""Classification: what a message needs (skills, queue, priority, language) by the rules.

`classify` applies `routing.rules` in file order: every condition a rule's
`match` gives must hold; a matching rule merges its skills (highest level
wins), overrides queue and priority, adds its tags, and `stop: true` ends the
evaluation. Complaint keywords (every language of the shipped or configured
vocabulary, whatever the detected one) then mark a complaint: its skill is required, the priority is
raised to at least the complaint priority, and the tag `complaint` is added.

Keywords match whole words and phrases, ignoring case and accents, in the
subject and text together. A rule's regex is searched (case-insensitively) in
the text as written and in its accent-free form, so `devolucion` matches
`devolución` either way. Every step leaves a human-readable reason.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from router.config.people import BusinessHoursConfig
from router.config.routing import MatchConfig, RoutingConfig
from router.config.types import PRIORITIES, Priority
from router.envelope import Envelope
from router.routing.hours import is_open
from router.routing.language import LanguageDetector, default_detector, primary

COMPLAINT_TAG = "complaint"


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the store knows about the customer that rules may match on."""

    tier: str | None = None
    tags: frozenset[str] = frozenset()
    language: str | None = None  # known from earlier messages; used when detection is unsure


@dataclass(frozen=True, slots=True)
class Classification:
    """What a conversation needs, and why."""

    skills: Mapping[str, int]  # skill -> minimum level
    queue: str | None
    priority: Priority
    tags: tuple[str, ...]
    language: str
    complaint: bool
    rules: tuple[str, ...]  # names of the matched rules, in order
    reasons: tuple[str, ...] = field(default=())


def fold(text: str) -> str:
    """Case- and accent-insensitive form: `Devolución` -> `devolucion`."""
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))


# The combining-mark blocks: what is left of accents after NFKD decomposition.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


@functools.lru_cache(maxsize=1024)
def _keywords(keywords: tuple[str, ...]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """One pattern for a keyword list, and each folded phrase's keyword as written."""
    phrases: dict[str, str] = {}
    for keyword in keywords:
        words = fold(keyword).split()
        if words:
            phrases.setdefault(" ".join(words), keyword)
    if not phrases:
        return None, phrases
    # Longest first, so that "refund now" is reported rather than "refund".
    bodies = (
        r"\s+".join(re.escape(w) for w in phrase.split())
        for phrase in sorted(phrases, key=len, reverse=True)
    )
    return re.compile(r"(?<!\w)(?:" + "|".join(bodies) + r")(?!\w)"), phrases


@functools.lru_cache(maxsize=1024)
def _regex(source: str) -> re.Pattern[str]:
    return re.compile(source, re.IGNORECASE)


def find_keyword(keywords: Iterable[str], folded_text: str) -> str | None:
    """The keyword found first in `folded_text` (see `fold`) as a whole word or phrase."""
    pattern, phrases = _keywords(tuple(keywords))
    if pattern is None:
        return None
    found = pattern.search(folded_text)
    return None if found is None else phrases[" ".join(found.group(0).split())]


def first_keyword(
    vocabulary: Mapping[str, Iterable[str]], folded_text: str
) -> tuple[str, str] | None:
    """The first keyword of a vocabulary (per language) found in `folded_text`, and its
    language; None when none is."""
    for lang, keywords in vocabulary.items():
        keyword = find_keyword(keywords, folded_text)
        if keyword is not None:
            return keyword, lang
    return None


def _same_language(language: str, wanted: Collection[str]) -> bool:
    return language in wanted or primary(language) in {primary(w) for w in wanted}


def _raise_to(priority: Priority, floor: Priority) -> Priority:
    return priority if PRIORITIES.index(priority) <= PRIORITIES.index(floor) else floor


class _Message:
    """The parts of an envelope the rules read, computed once."""

    __slots__ = ("envelope", "folded", "raw")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.raw = "\n".join(p for p in (envelope.subject, envelope.text) if p)
        self.folded = fold(self.raw)


def _match(
    match: MatchConfig,
    msg: _Message,
    customer: CustomerFacts,
    language: str,
    now: datetime,
    hours: Mapping[str, BusinessHoursConfig],
) -> list[str] | None:
    """Why `match` holds (one phrase per condition), or None when it does not."""
    why: list[str] = []
    env = msg.envelope
    if match.channel:
        if env.channel not in match.channel:
            return None
        why.append(f"channel {env.channel}")
    if match.channel_type:
        if env.channel_type not in match.channel_type:
            return None
        why.append(f"channel type {env.channel_type}")
    if match.keywords:
        keyword = find_keyword(match.keywords, msg.folded)
        if keyword is None:
            return None
        why.append(f"keyword {keyword!r}")
    if match.regex is not None:
        pattern = _regex(match.regex)
        found = pattern.search(msg.raw) or pattern.search(msg.folded)
        if found is None:
            return None
        why.append(f"regex /{match.regex}/ on {found.group(0)!r}")
    if match.language:
        if not _same_language(language, match.language):
            return None
        why.append(f"language {language}")
    if match.tier:
        if customer.tier is None or customer.tier not in match.tier:
            return None
        why.append(f"tier {customer.tier}")
    if match.tags:
        common = sorted(customer.tags.intersection(match.tags))
        if not common:
            return None
        why.append(f"customer tag {common[0]!r}")
    if match.during is not None:
        if not is_open(hours[match.during], now):
            return None
        why.append(f"during {match.during} hours")
    if match.outside is not None:
        if is_open(hours[match.outside], now):
            return None
        why.append(f"outside {match.outside} hours")
    return why


def detect_language(
    text: str,
    customer: CustomerFacts,
    routing: RoutingConfig,
    *,
    languages: Collection[str],
    detector: LanguageDetector | None = None,
) -> tuple[str, str]:
    """The message's language and why: detected, else the customer's, else the default."""
    if text.strip() and languages:
        found = (detector or default_detector()).detect(text, languages)
        if found is not None:
            return found, f"language {found} detected"
    if customer.language is not None:
        return customer.language, f"language {customer.language} known from earlier messages"
    default = routing.default_language
    return default, f"language {default} by default (not detected)"


def classify(
    envelope: Envelope,
    customer: CustomerFacts,
    routing: RoutingConfig,
    *,
    languages: Collection[str],
    now: datetime,
    detector: LanguageDetector | None = None,
    hours: Mapping[str, BusinessHoursConfig] | None = None,
) -> Classification:
    """Classify one customer message by `routing`'s rules and complaint keywords.

    `languages` are those the configuration knows (agents' and templates');
    detection chooses among them. `now` is the time of the decision, for the
    `during` / `outside` conditions on the named business `hours`.
    """
    msg = _Message(envelope)
    language, language_reason = detect_language(
        msg.raw, customer, routing, languages=languages, detector=detector
    )
    reasons = [language_reason]
    skills: dict[str, int] = {}
    queue = routing.default_queue
    priority: Priority = routing.default_priority
    tags: list[str] = []
    matched: list[str] = []

    for rule in routing.rules:
        why = _match(rule.match, msg, customer, language, now, hours or {})
        if why is None:
            continue
        matched.append(rule.name)
        reasons.append(f"rule {rule.name} matched " + (", ".join(why) or "(no conditions)"))
        then = rule.then
        for skill, level in then.skills.items():
            skills[skill] = max(level, skills.get(skill, 0))
        if then.queue is not None:
            queue = then.queue
        if then.priority is not None:
            priority = then.priority
        tags.extend(t for t in then.tags if t not in tags)
        if rule.stop:
            reasons.append(f"rule {rule.name} stops further rules")
            break

    complaints = routing.complaints
    found = first_keyword(complaints.vocabulary(), msg.folded)
    complaint = found is not None
    if found is not None:
        keyword, lang = found
        reasons.append(f"complaint keyword {keyword!r} ({lang})")
        skills[complaints.skill] = max(complaints.min_level, skills.get(complaints.skill, 0))
        raised = _raise_to(priority, complaints.priority)
        if raised != priority:
            reasons.append(f"complaint raises priority {priority} -> {raised}")
            priority = raised
        if COMPLAINT_TAG not in tags:
            tags.append(COMPLAINT_TAG)

    return Classification(
        skills=MappingProxyType(skills),
        queue=queue,
        priority=priority,
        tags=tuple(tags),
        language=language,
        complaint=complaint,
        rules=tuple(matched),
        reasons=tuple(reasons),
    )
