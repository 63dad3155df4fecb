"""The typed model of channels.yaml: `Config`, assembled from the section models.

Every field carries a description; docs/configuration.md is generated from
them (`python -m router.config.reference`). Names that other sections refer
to are checked in `router.config.references` once every section is valid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.config.channels import ChannelConfig, error_detail, registry_of, reraise
from router.config.infra import BlobsConfig, BusConfig, HttpConfig, LoggingConfig, StoreConfig
from router.config.people import AgentConfig, BusinessHoursConfig, QueueConfig, SkillConfig
from router.config.routing import RoutingConfig, SlaConfig, TemplateText
from router.config.supervisor import SupervisorConfig
from router.config.types import (
    Language,
    Name,
    Section,
)


class Config(Section):
    """The whole of channels.yaml."""

    version: Literal[1] = Field(description="Format version of this file; always 1.")
    bus: BusConfig = Field(default_factory=BusConfig, description="The message bus.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The database.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="The HTTP listener.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logs.")
    blobs: BlobsConfig = Field(default_factory=BlobsConfig, description="Attachment storage.")
    channels: list[ChannelConfig] = Field(
        default_factory=list,
        description="Channel instances.",
    )
    skills: list[SkillConfig] = Field(default_factory=list, description="Skills.")
    queues: list[QueueConfig] = Field(default_factory=list, description="Queues.")
    agents: list[AgentConfig] = Field(default_factory=list, description="Agents.")
    business_hours: dict[Name, BusinessHoursConfig] = Field(
        default_factory=dict,
        description="Named opening hours.",
    )
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig,
        validate_default=True,  # the shipped complaint words depend on `skills`
        description="Classification and assignment.",
    )
    sla: SlaConfig = Field(default_factory=SlaConfig, description="Service levels.")
    supervisor: SupervisorConfig = Field(
        default_factory=SupervisorConfig, description="The supervisor page (`/status`)."
    )
    templates: dict[Name, dict[Language, TemplateText]] = Field(
        default_factory=dict,
        description="Messages to customers by name and language. Placeholders:"
        " {customer_name}, {conversation_ref}, {agent_name} (follow-up),"
        " {expected_response} (the promised wait: `within 5 minutes`, `by Monday 09:30`),"
        " {due_at} (when that is: `tomorrow at 09:30`) and {opens_at} (the next opening"
        " of the channel's business hours: `now`, `tomorrow at 09:00`), and in the update"
        " for a broken promise {promise} (what the agent promised) and {promise_due} (for"
        " when: `today at 17:00`); times in the"
        " customer's language (English or Spanish) and the channel's time zone."
        " Any other placeholder is an error.",
    )

    @field_validator("routing")
    @classmethod
    def _shipped_complaint_words_need_the_skill(
        cls, routing: RoutingConfig, info: ValidationInfo
    ) -> RoutingConfig:
        """The shipped complaint words apply only where the complaint skill is defined:
        a complaint waits for an agent qualified for it, and there could be none. Words
        the operator gives need the skill (a reference error without it)."""
        complaints = routing.complaints
        skills = info.data.get("skills")
        if skills is None or complaints.model_fields_set & {"keywords", "extra_keywords"}:
            return routing
        if any(s.name == complaints.skill for s in skills):
            return routing
        off = complaints.model_copy(update={"keywords": {}})
        return routing.model_copy(update={"complaints": off})

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        context = info.context or {}
        if context.get("check_references", True):
            from router.config.references import reference_problems

            problems = reference_problems(self, registry_of(info))
            if problems:
                raise reraise(
                    type(self).__name__,
                    [error_detail(loc, message, None, "reference") for loc, message in problems],
                )
        return self

    @property
    def enabled_channels(self) -> list[ChannelConfig]:
        return [c for c in self.channels if c.enabled]

    def channel(self, name: str) -> ChannelConfig:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(name)
