"""Skills, queues, agents (and how each is reached), and business hours."""

from __future__ import annotations

import itertools
import re
from datetime import date, time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.config.channels import registry_of
from router.config.types import (
    DocType,
    Duration,
    LanguageList,
    Level,
    Name,
    NameList,
    Section,
    TimeZone,
    check_timezone,
    fail,
)


class SkillConfig(Section):
    """A skill agents can have and conversations can require."""

    name: Name = Field(description="Skill name, used in queues, agents and rules.")
    description: str = Field("", description="What the skill covers.")


class QueueConfig(Section):
    """Where conversations wait for a qualified agent."""

    name: Name = Field(description="Queue name, used by rules and overflow.")
    description: str = Field("", description="What the queue is for.")
    skills: dict[Name, Level] = Field(
        default_factory=dict,
        description="Skills (with minimum level) an agent needs to take from this queue.",
    )
    overflow: Name | None = Field(
        None,
        description="Queue that takes over when a conversation waits too long here.",
    )
    overflow_after: Duration | None = Field(
        None,
        description="Wait in this queue before moving to `overflow`, counted in the"
        " channel's business hours like the SLA clocks (default: at the SLA warning).",
    )

    @model_validator(mode="after")
    def _overflow_after_needs_overflow(self) -> QueueConfig:
        if self.overflow_after is not None and self.overflow is None:
            raise fail(
                type(self).__name__,
                ("overflow_after",),
                "overflow_after needs overflow: the queue the conversation moves to",
            )
        return self


class SinkConfig(Section):
    """How an agent receives conversations and replies: the tool the agent already uses."""

    type: str = Field(
        description="A channel type that reaches agents (its connector says so): `email`"
        " (notification with a signed Reply-To), `telegram` (direct messages from the"
        " bot) or `webhook` (signed JSON POST to Slack, Teams or any tool, which POSTs"
        " the agent's replies back).",
    )
    channel: Name | None = Field(
        None,
        description="The channel (of the sink's type) that reaches the agent; for"
        " `webhook`, its key signs the deliveries and its events route takes the"
        " agent's replies and commands.",
    )
    address: str | None = Field(
        None,
        description="Where the sink's type reaches the agent, checked by its connector."
        " For `email`: the agent's address (replies from it are authenticated as this"
        " agent). For `telegram`: the agent's numeric user id. Not used by `webhook`"
        " (the tool names the agent by id).",
    )
    url: str | None = Field(
        None,
        description="For a type reached at a URL (`webhook`): where this agent's"
        " deliveries are POSTed. Slack and Teams URLs are secrets themselves: give them"
        " as `${ENV_VAR}`.",
    )
    accepts: bool | None = Field(
        None,
        description="Whether the agent's tool can answer a delivery with `accept`; if it"
        " can, an assignment not accepted within `routing.assignment_timeout` goes to"
        " someone else. Unset: the sink type's default (`telegram` can; `webhook` and"
        " `email` cannot, since a plain incoming webhook such as Slack's or Teams' has no"
        " way to answer). Set `true` for a webhook tool that POSTs `accept` back.",
    )

    @field_validator("type")
    @classmethod
    def _known_sink_type(cls, value: str, info: ValidationInfo) -> str:
        sinks = sorted(t for t, spec in registry_of(info).items() if spec.agent_sink)
        if value not in sinks:
            raise PydanticCustomError(
                "sink_type",
                "unknown sink type {type}; types that reach agents: {known}",
                {"type": repr(value), "known": ", ".join(sinks) or "(none installed)"},
            )
        return value

    @model_validator(mode="after")
    def _fields_for_type(self, info: ValidationInfo) -> SinkConfig:
        title = type(self).__name__
        spec = registry_of(info).get(self.type)
        if spec is None:  # the type's own error says why
            return self
        if self.channel is None:
            raise fail(
                title,
                ("channel",),
                f"a {self.type} sink needs channel: the name of a channel of type {self.type}",
            )
        if spec.sink_address is None:
            if self.address is not None:
                raise fail(
                    title,
                    ("address",),
                    f"a {self.type} sink has no address: the agent's tool names the agent by id",
                )
        elif self.address is None:
            raise fail(title, ("address",), f"a {self.type} sink needs address")
        else:
            try:
                normalized = spec.sink_address(self.address)
            except ValueError as exc:
                raise fail(title, ("address",), str(exc)) from None
            if normalized != self.address:
                object.__setattr__(self, "address", normalized)  # frozen; set once, here
        if spec.sink_url:
            if self.url is None:
                raise fail(title, ("url",), f"a {self.type} sink needs url")
            if urlsplit(self.url).scheme not in ("http", "https"):
                raise fail(title, ("url",), "expected an http:// or https:// URL")
        return self


class AgentConfig(Section):
    """A support agent."""

    id: Name = Field(description="Stable agent id (kept in the store; do not reuse).")
    name: str = Field(min_length=1, description="Display name, shown to customers.")
    skills: dict[Name, Level] = Field(
        default_factory=dict,
        description="Skills and levels, 1 (basic) to 5 (expert).",
    )
    languages: LanguageList = Field(
        default_factory=lambda: ["en"],
        description="Languages the agent answers in; the first is the one they read"
        " deliveries in (English or Spanish; any other reads English).",
    )
    channels: NameList = Field(
        default_factory=list,
        description="Channels the agent serves (empty: every channel).",
    )
    capacity: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Open conversations at once per channel type; types not listed use"
        " `routing.default_capacity`.",
    )
    schedule: Name | None = Field(
        None,
        description="Business hours the agent works (null: whenever available).",
    )
    timezone: TimeZone | None = Field(
        None,
        description="The agent's time zone (default: the schedule's).",
    )
    status: Literal["available", "away", "offline"] = Field(
        "available",
        description="Status at start, until the agent sends a command.",
    )
    supervisor: bool = Field(
        False,
        description="Receives SLA escalations and may transfer any conversation.",
    )
    sink: SinkConfig = Field(description="How conversations reach this agent.")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class TimeRange(BaseModel):
    """Opening hours within one day, written `"09:00-18:00"` (end may be 24:00)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time | None  # None: until midnight ("24:00")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\s*(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*", value)
        if m is None:
            raise PydanticCustomError("time_range", "expected a range such as 09:00-18:00")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise PydanticCustomError("time_range", "not a time of day")
        start, end = time(h1, m1), (None if h2 == 24 else time(h2, m2))
        if end is not None and end <= start:
            raise PydanticCustomError(
                "time_range",
                "the range ends before it starts (split ranges across midnight)",
            )
        return {"start": start, "end": end}

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{'24:00' if self.end is None else f'{self.end:%H:%M}'}"


class BusinessHoursConfig(Section):
    """Opening hours: when SLA clocks run and when agents on this schedule work."""

    timezone: TimeZone = Field(description="IANA time zone of the hours, e.g. Europe/Madrid.")
    weekly: dict[Day, list[Annotated[TimeRange, DocType('"HH:MM-HH:MM"')]]] = Field(
        default_factory=dict,
        description="Open ranges per weekday (`mon`...`sun`); days not listed are closed.",
    )
    holidays: list[date] = Field(
        default_factory=list,
        description="Closed dates (YYYY-MM-DD).",
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str | None:
        return check_timezone(value)

    @field_validator("weekly")
    @classmethod
    def _no_overlap(cls, value: dict[str, list[TimeRange]]) -> dict[str, list[TimeRange]]:
        for day in _DAYS:
            ranges = sorted(value.get(day, []), key=lambda r: r.start)
            for a, b in itertools.pairwise(ranges):
                if a.end is None or a.end > b.start:
                    raise PydanticCustomError(
                        "overlap",
                        "{day}: {a} overlaps {b}",
                        {"day": day, "a": str(a), "b": str(b)},
                    )
        return value
