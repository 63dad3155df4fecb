"""The `channels:` section: `type: <connector>` plus a block of that name.

The block is validated by the connector's own model, found in the connector
registry, and exposed as `ChannelConfig.settings`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from router.config.source import Unresolved
from router.config.types import (
    DocType,
    Duration,
    Name,
    Section,
    fail,
)
from router.connector import ConnectorSpec, load_registry
from router.intake import MAX_IN_FLIGHT


@cache
def default_registry() -> dict[str, ConnectorSpec]:
    """The installed connectors, loaded once (the loader passes its own)."""
    return load_registry()


def registry_of(info: ValidationInfo) -> dict[str, ConnectorSpec]:
    context = info.context or {}
    registry = context.get("registry")
    return registry if isinstance(registry, dict) else default_registry()


@cache
def _block_model(type_name: str, config: type[BaseModel]) -> type[BaseModel]:
    """A wrapper so a channel block's errors are located under its `<type>:` key."""
    return create_model(
        "ChannelBlock_" + re.sub(r"\W", "_", type_name),
        __config__=ConfigDict(extra="ignore"),
        block=(config, Field(alias=type_name)),
    )


def reraise(title: str, errors: list[ErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(e["type"], e["msg"]),
                loc=e["loc"],
                input=e["input"],
            )
            for e in errors
        ],
    )


class ReconnectConfig(Section):
    """How the daemon connects a channel's connector again after it failed (any type)."""

    attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Connection attempts in a row, each after a capped, jittered backoff,"
        " before the channel is reported down (`/readyz`, `omnirouter_connector_down`, one"
        " log line); it then tries again every `cap`. An error retrying cannot fix is not"
        " retried this way: see `after_refusal`.",
    )
    base: Duration = Field(
        timedelta(seconds=1),
        description="Longest wait before the first retry; each further wait may be twice as"
        " long, up to `cap` (full jitter: a random share of it).",
    )
    cap: Duration = Field(
        timedelta(seconds=60),
        description="Longest wait between two attempts.",
    )
    after_refusal: Duration = Field(
        timedelta(minutes=10),
        ge=timedelta(minutes=1),
        description="An error retrying cannot fix (a wrong password, a refused token, a"
        " certificate the configured trust rejects) marks the channel down at once, with"
        " the reason, and is logged once; the next attempt comes only after this long"
        " (at least a minute, so a wrong password is never hammered at the server), or"
        " at once after a config reload (SIGHUP), e.g. once the password file is fixed.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.base > self.cap:
            raise fail(type(self).__name__, ("base",), "base must not be longer than cap")
        return self


class ChannelConfig(Section):
    """One channel instance: `type: email` plus an `email:` block with its settings."""

    name: Name = Field(
        description="Unique channel name; appears in topic names (`omni.outbound.<name>`),"
        " envelopes and metrics.",
    )
    type: str = Field(description="Connector type; the settings go in a block of that name.")
    enabled: bool = Field(
        True,
        description="A disabled channel is validated but not started; unset `${VAR}`s"
        " inside its block are not errors.",
    )
    description: str = Field("", description="Free text for operators.")
    business_hours: Name | None = Field(
        None,
        description="Business hours this channel's SLA clock runs on"
        " (default: `sla.business_hours`).",
    )
    acknowledge: Name | None = Field(
        None,
        description="Template sent to the customer as soon as a new conversation"
        " arrives, with the expected response time; null sends none.",
    )
    update_every: Duration | None = Field(
        None,
        description="While a customer waits for an answer (their latest message has no"
        " agent reply after it), tell them where they stand this often: on channel types"
        " that show the queue live (web chat), their position and wait while queued; else"
        " a message saying we are still on it and when we expect to answer. Never more"
        " often, and none once an agent has answered (null: no updates).",
    )
    update_template: Name | None = Field(
        None,
        description="Template of those updates (fields as for `acknowledge`; null: a"
        " built-in text in English or Spanish).",
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig,
        description="How the daemon connects this channel again after its connector failed.",
    )
    max_in_flight: int = Field(
        MAX_IN_FLIGHT,
        ge=1,
        le=10_000,
        description="Inputs from this channel being put on the bus at once, so their"
        " writes share the bus's commits. Messages of one conversation still reach the bus"
        " in the order they came, and the channel is told each is safe in the order taken."
        " A crash repeats at most this many (the router drops the repeats). 1 takes one"
        " at a time.",
    )
    settings: Annotated[BaseModel | None, DocType("(the `<type>:` block)")] = Field(
        None,
        exclude=True,
        description="The validated `<type>:` block (set by the loader, not written in YAML).",
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        registry = registry_of(info)
        if value not in registry:
            raise PydanticCustomError(
                "channel_type",
                "unknown channel type {type}; known types: {known}",
                {"type": repr(value), "known": ", ".join(sorted(registry)) or "(none installed)"},
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _with_block(
        cls,
        data: Any,
        handler: ModelWrapValidatorHandler[ChannelConfig],
        info: ValidationInfo,
    ) -> ChannelConfig:
        if not isinstance(data, dict):
            return handler(data)
        registry = registry_of(info)
        rest = dict(data)
        errors: list[ErrorDetails] = []
        if "settings" in rest:
            errors.append(
                error_detail(
                    ("settings",),
                    "unknown key: write the settings in the block named after the type",
                    rest.pop("settings"),
                )
            )
        type_name = rest.get("type")
        block: Any = None
        if isinstance(type_name, str) and type_name not in cls.model_fields:
            block = rest.pop(type_name, None)  # an unknown type's block is not also "extra"
        spec = registry.get(type_name) if isinstance(type_name, str) else None
        enabled = _truthy(rest.get("enabled", True))
        # Secrets are read for an enabled channel, unless the command never starts one
        # (the loader's `channel_secrets=False`): then the block is read as a disabled one's.
        reads = enabled and (info.context or {}).get("channel_secrets", True) is not False
        base: ChannelConfig | None = None
        try:
            base = handler(rest)
        except ValidationError as exc:
            errors.extend(exc.errors())
        settings: BaseModel | None = None
        if spec is not None and type_name is not None:
            wrapper = _block_model(type_name, spec.config)
            context = {**(info.context or {}), "channel_enabled": reads}
            try:
                parsed = wrapper.model_validate(
                    {type_name: {} if block is None else block}, context=context
                )
                settings = parsed.block  # type: ignore[attr-defined]
            except ValidationError as exc:
                block_errors = exc.errors()
                # A disabled channel may be waiting for its variables; only those fail.
                if reads or not all(isinstance(e["input"], Unresolved) for e in block_errors):
                    errors.extend(block_errors)
            if enabled and spec.factory is None:
                errors.append(
                    error_detail(
                        ("enabled",) if "enabled" in data else ("type",),
                        f"the {type_name} connector's runtime is not in this build yet;"
                        " set enabled: false",
                        data.get("enabled", type_name),
                    )
                )
        if errors or base is None:
            raise reraise(cls.__name__, errors)
        return base.model_copy(update={"settings": settings})


def error_detail(
    loc: tuple[str | int, ...],
    message: str,
    value: Any,
    kind: str = "config",
) -> ErrorDetails:
    return {"type": kind, "loc": loc, "msg": message, "input": value}


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "no", "off", "0", "n", "f"}
    return True
