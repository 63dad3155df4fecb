"""Routing rules, complaint detection, SLA targets and customer templates."""

from __future__ import annotations

import re
import string
from datetime import time, timedelta
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
)
from pydantic_core import PydanticCustomError

from router.config.people import Day
from router.config.types import (
    DocType,
    Duration,
    Language,
    LanguageList,
    Level,
    Name,
    NameList,
    Priority,
    Secret,
    Section,
    StrList,
)


def _regex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise PydanticCustomError(
                "regex",
                "invalid regular expression: {error}",
                {"error": str(exc)},
            ) from None
    return value


Regex = Annotated[str, BeforeValidator(_regex), DocType("regular expression")]


class MatchConfig(Section):
    """Conditions of a rule; all given conditions must hold (an empty match always holds)."""

    channel: NameList = Field(default_factory=list, description="Any of these channels.")
    channel_type: StrList = Field(
        default_factory=list,
        description="Any of these channel types.",
    )
    keywords: StrList = Field(
        default_factory=list,
        description="Any of these words or phrases in the subject or text (case-insensitive).",
    )
    regex: Regex | None = Field(
        None,
        description="Regular expression searched in the subject and text (case-insensitive).",
    )
    language: LanguageList = Field(
        default_factory=list,
        description="Any of these detected languages.",
    )
    tier: StrList = Field(default_factory=list, description="Any of these customer tiers.")
    tags: StrList = Field(
        default_factory=list,
        description="The customer has any of these tags.",
    )
    during: Name | None = Field(
        None,
        description="Only while these business hours are open (e.g. office hours).",
    )
    outside: Name | None = Field(
        None,
        description="Only while these business hours are closed (e.g. nights, weekends).",
    )

    def pattern(self) -> re.Pattern[str] | None:
        return None if self.regex is None else re.compile(self.regex, re.IGNORECASE)


class ThenConfig(Section):
    """What a matching rule does to the conversation."""

    skills: dict[Name, Level] = Field(
        default_factory=dict,
        description="Skills (with minimum level) the agent needs.",
    )
    queue: Name | None = Field(None, description="Queue the conversation waits in.")
    priority: Priority | None = Field(
        None,
        description="Priority: `urgent`, `high`, `normal` or `low`.",
    )
    tags: StrList = Field(default_factory=list, description="Tags added to the conversation.")


class RuleConfig(Section):
    """A classification rule. Rules apply in file order; later ones override queue and priority."""

    name: Name = Field(description="Rule name, shown in routing explanations.")
    match: MatchConfig = Field(
        default_factory=MatchConfig,
        description="When the rule applies.",
    )
    then: ThenConfig = Field(description="What it sets.")
    stop: bool = Field(False, description="Stop evaluating further rules when this one matches.")


# The shipped complaint vocabulary: words customers use when they complain,
# not when they merely ask ("refund" alone is a billing question).
DEFAULT_COMPLAINT_KEYWORDS: dict[str, list[str]] = {
    "en": [
        "complaint",
        "complain",
        "unacceptable",
        "disappointed",
        "speak to a manager",
        "talk to a manager",
        "worst service",
        "cancel my account",
        "lawyer",
        "legal action",
        "refund now",
    ],
    "es": [
        "queja",
        "quejarme",
        "reclamación",
        "inaceptable",
        "decepcionado",
        "decepcionada",
        "hablar con un responsable",
        "hablar con el encargado",
        "pésimo servicio",
        "dar de baja",
        "abogado",
        "denuncia",
        "hoja de reclamaciones",
    ],
}


def vocabulary(
    keywords: dict[str, list[str]], extra: dict[str, list[str]]
) -> dict[str, tuple[str, ...]]:
    """Keywords per language, the shipped (or given) ones then the extra ones, once each."""
    out: dict[str, tuple[str, ...]] = {}
    for lang in (*keywords, *extra):
        out[lang] = tuple(dict.fromkeys([*keywords.get(lang, ()), *extra.get(lang, ())]))
    return out


# The shipped praise vocabulary: what customers say when they are pleased with the
# service, not the "thanks" that ends every message ("thanks in advance").
DEFAULT_PRAISE_KEYWORDS: dict[str, list[str]] = {
    "en": [
        "great service",
        "excellent service",
        "amazing service",
        "fantastic service",
        "brilliant service",
        "great job",
        "well done",
        "very helpful",
        "so helpful",
        "really helpful",
        "thank you so much",
        "thanks so much",
        "thanks a lot",
        "you are a star",
        "you're a star",
        "much appreciated",
    ],
    "es": [
        "muchas gracias",
        "mil gracias",
        "gran servicio",
        "excelente servicio",
        "buen servicio",
        "muy buen servicio",
        "buen trabajo",
        "muy amable",
        "muy amables",
        "me habéis ayudado mucho",
        "me has ayudado mucho",
        "sois los mejores",
        "eres un sol",
        "de diez",
    ],
}


class PraiseConfig(Section):
    """Praise goes to the agent: a customer message that reads as thanks or praise (and
    not as a complaint: complaint words win in a mixed message), or a good answer to the
    satisfaction follow-up, is relayed to the agent who handled the conversation and
    counted for them; supervisors get a weekly digest.

    English and Spanish words are shipped in `keywords`; add yours in `extra_keywords`,
    or give `keywords` to replace them (`keywords: {}` and no extra: off, the follow-up
    answers still count).
    """

    keywords: dict[Language, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_PRAISE_KEYWORDS.items()},
        description="Words and phrases that mark a message as praise, per language (whole"
        " words, ignoring case and accents); giving `keywords` replaces the shipped ones.",
    )
    extra_keywords: dict[Language, list[str]] = Field(
        default_factory=dict,
        description="More praise words and phrases per language, added to `keywords`.",
    )
    digest: bool = Field(
        True,
        description="Send supervisors (through their own sink) a weekly digest of each"
        " agent's praise, when there was any.",
    )
    digest_day: Day = Field("mon", description="The digest's weekday (`mon`...`sun`).")
    digest_time: time = Field(
        time(9, 0),
        description="The digest's time of day, in the zone of `sla.business_hours` (UTC without).",
    )

    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """Every praise keyword per language: `keywords` plus `extra_keywords`."""
        return vocabulary(self.keywords, self.extra_keywords)


class ComplaintsConfig(Section):
    """Complaint detection: complaints go only to agents qualified for them.

    English and Spanish words are shipped in `keywords`; add yours in
    `extra_keywords`, or give `keywords` to replace the shipped ones
    (`keywords: {}` and no extra keywords: detection is off). The shipped
    words apply only when `skill` is a defined skill (`Config` turns them off
    otherwise: nobody could be qualified for a complaint).
    """

    skill: Name = Field("complaints", description="Skill a complaint requires.")
    min_level: Level = Field(3, description="Minimum level of that skill.")
    priority: Priority = Field("high", description="Priority given to complaints.")
    keywords: dict[Language, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_COMPLAINT_KEYWORDS.items()},
        description="Words and phrases that mark a message as a complaint, per language"
        " (whole words, ignoring case and accents). English and Spanish are shipped,"
        " and apply when `skill` is a defined skill (without it, detection is off:"
        " `omnirouter check` says so); giving `keywords` replaces all of them (`{}`: none).",
    )
    extra_keywords: dict[Language, list[str]] = Field(
        default_factory=dict,
        description="More complaint words and phrases per language, added to `keywords`"
        " (the way to extend the shipped vocabulary).",
    )

    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """Every complaint keyword per language: `keywords` plus `extra_keywords`."""
        return vocabulary(self.keywords, self.extra_keywords)


class RoutingConfig(Section):
    """How conversations are classified and assigned."""

    default_queue: Name | None = Field(
        None,
        description="Queue for conversations no rule puts in a queue (null: any qualified agent).",
    )
    default_priority: Priority = Field("normal", description="Priority when no rule sets one.")
    default_language: Language = Field(
        "en",
        description="Language used when detection fails; every template needs it.",
    )
    default_capacity: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Open conversations per agent and channel type, unless the agent says"
        " otherwise. A type not listed has its connector's default (see *Channel types*).",
    )
    last_agent_wait: Duration = Field(
        timedelta(minutes=2),
        description="How long to wait for the customer's previous agent"
        " before widening to any qualified agent.",
    )
    assignment_timeout: Duration = Field(
        timedelta(seconds=90),
        description="Reassign when an agent has not taken an"
        " assignment within this time (where the tool can tell).",
    )
    aging_step: Duration = Field(
        timedelta(minutes=10),
        description="A waiting conversation gains one priority level per step.",
    )
    standing_interval: Duration = Field(
        timedelta(seconds=20),
        description="The least time between two queue-position updates to one waiting"
        " customer, on channel types that show them live (web chat); a change meanwhile"
        " is told when it ends.",
    )
    last_agent_window: Duration = Field(
        timedelta(days=30),
        description="How far back the customer's previous agent counts as theirs.",
    )
    context_days: int = Field(
        30,
        ge=0,
        description="The customer's other conversations of this many days travel with"
        " each delivery to an agent.",
    )
    signing_key: Secret | None = Field(
        None,
        description="Key that signs conversation tokens in agent notifications (agents'"
        " replies must carry a valid one). Unset: a random key is generated once and"
        " kept in the store; set it when several deployments must accept each"
        " other's tokens.",
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="Classification rules.")
    complaints: ComplaintsConfig = Field(
        default_factory=ComplaintsConfig,
        description="Complaint detection.",
    )
    praise: PraiseConfig = Field(
        default_factory=PraiseConfig,
        description="Praise relayed to agents, and the supervisors' weekly digest.",
    )
    callbacks: CallbacksConfig = Field(
        default_factory=lambda: CallbacksConfig(),
        description="Calls owed to customers (a missed, abandoned or voicemail call).",
    )
    promises: PromisesConfig = Field(
        default_factory=lambda: PromisesConfig(),
        description="What agents promise customers (`promise`, `kept`): reminders and"
        " the update when one falls due unkept.",
    )


class CallbacksConfig(Section):
    """How a callback is retried when the customer does not answer (`no-answer`)."""

    retry_after: Duration = Field(
        timedelta(minutes=15),
        description="After a `no-answer`, when the owner is reminded to call again.",
    )
    attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Unanswered attempts before we stop calling: the customer is told on"
        " another channel we know for them, and an incident is recorded.",
    )
    unreached_template: Name | None = Field(
        None,
        description="Template telling the customer we tried to call them (fields:"
        " customer_name, conversation_ref, attempts; null: a built-in English text).",
    )


class PromisesConfig(Section):
    """Agents' promises to customers: when the owner is reminded, what a broken one says."""

    remind_before: Duration = Field(
        timedelta(minutes=30),
        description="The owner is reminded this long before a promise falls due, or at 80%"
        " of the time it was given when that is later (a promise of 20 minutes: after 16).",
    )
    recent_reply: Duration = Field(
        timedelta(minutes=30),
        description="A promise that falls due unkept tells the customer we are still on it,"
        " unless an agent wrote to them this recently (and after the promise was made).",
    )
    broken_template: Name | None = Field(
        None,
        description="Template of that update (fields: customer_name, conversation_ref,"
        " promise, promise_due; null: a built-in English or Spanish text).",
    )


class TargetsConfig(Section):
    """First-response targets per priority; missing priorities use `normal`."""

    urgent: Duration | None = Field(None, description="Target for urgent conversations.")
    high: Duration | None = Field(None, description="Target for high-priority conversations.")
    normal: Duration = Field(description="Target for normal conversations.")
    low: Duration | None = Field(None, description="Target for low-priority conversations.")

    def for_priority(self, priority: Priority) -> timedelta:
        value: timedelta | None = getattr(self, priority)
        return self.normal if value is None else value


class SlaConfig(Section):
    """Service levels: first-response targets, warnings and follow-up."""

    business_hours: Name | None = Field(
        None,
        description="Business hours the SLA clocks run on (null: around the clock).",
    )
    first_response: dict[str, TargetsConfig] = Field(
        default_factory=dict,
        description="First-response targets per channel type and priority. A type not"
        " listed has its connector's targets (see *Channel types*), or no first-response SLA"
        " when it declares none.",
    )
    warning_at: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Fraction of the target after which the customer is"
        " told we are on it and the conversation is escalated; with business hours it"
        " is a fraction of open time, as the target is.",
    )
    warning_template: Name | None = Field(
        None,
        description="Template sent to the customer at the warning (null: none).",
    )
    follow_up_after: Duration | None = Field(
        timedelta(hours=24),
        description="After resolution, ask for satisfaction after this long (null: never).",
    )
    follow_up_template: Name | None = Field(
        None,
        description="Template of the follow-up question (null: no follow-up).",
    )
    satisfied_keywords: dict[Language, list[str]] = Field(
        default_factory=lambda: {
            "en": ["thanks", "thank you", "all good", "solved", "perfect", "great"],
            "es": ["gracias", "todo bien", "resuelto", "perfecto", "genial"],
        },
        description="An answer to the follow-up with one of these (or a score of 4-5)"
        " closes the conversation; any other answer reopens it to a senior agent.",
    )
    senior_skill: Name | None = Field(
        None,
        description="Skill a reopened conversation (bad follow-up answer) requires"
        " (null: the complaints skill).",
    )
    senior_level: Level = Field(4, description="Minimum level of `senior_skill`.")


# The placeholders templates may use (what each holds: `Config.templates`).
TEMPLATE_FIELDS = frozenset(
    {
        "customer_name",
        "expected_response",
        "conversation_ref",
        "agent_name",
        "opens_at",
        "due_at",
        # A promise that fell due unkept: what was promised, and for when.
        "promise",
        "promise_due",
    }
)


def _template_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise PydanticCustomError(
            "template",
            "bad placeholder: {error} (double a brace to write it literally)",
            {"error": str(exc)},
        ) from None
    unknown = sorted(n for n in names if n not in TEMPLATE_FIELDS)
    if unknown:
        raise PydanticCustomError(
            "template",
            "unknown placeholder {names}; known: {known}",
            {
                "names": ", ".join("{" + n + "}" for n in unknown),
                "known": ", ".join("{" + n + "}" for n in sorted(TEMPLATE_FIELDS)),
            },
        )
    return value


TemplateText = Annotated[str, BeforeValidator(_template_text), DocType("template text")]
