"""Building blocks shared by the config sections and the connectors' blocks.

Every config model derives from `Section`: unknown keys are errors, the
values are frozen, and a secret field `x` may be paired with `x_file`, a path
the secret is read from at load time (so rotating it takes a reload).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from router.config.source import FromFile, from_environment


class DocType:
    """Annotation metadata: how the reference doc names a type."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"DocType({self.name!r})"


def fail(
    title: str,
    loc: tuple[str | int, ...],
    message: str,
    value: object = None,
) -> ValidationError:
    """A validation error at `loc` (relative to the model being validated)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("config", message),
                loc=loc,
                input=value,
            )
        ],
    )


class Section(BaseModel):
    """Base of every config model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        context = info.context or {}
        for name in cls.model_fields:
            file_key = f"{name}_file"
            if file_key not in cls.model_fields or data.get(file_key) is None:
                continue
            if data.get(name) is not None:
                raise fail(cls.__name__, (file_key,), f"set either {name} or {file_key}, not both")
            if context.get("channel_enabled", True) is False:
                continue  # a disabled channel's secret files need not exist yet
            path = data[file_key]
            if not isinstance(path, str | Path):
                continue  # the field's own validation reports the type
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise fail(cls.__name__, (file_key,), f"cannot read {path}: {reason}") from None
            data = {**data, name: FromFile(text.rstrip("\r\n"))}
        return data


def _secret_source(value: Any, info: ValidationInfo) -> Any:
    context = info.context or {}
    if context.get("strict_secrets") and isinstance(value, str) and not from_environment(value):
        name = info.field_name or "secret"
        raise PydanticCustomError(
            "literal_secret",
            "secrets must not be written in the file: use {example} or {name}_file: /path/to/file",
            {"example": "${ENV_VAR}", "name": name},
        )
    return value


Secret = Annotated[SecretStr, BeforeValidator(_secret_source), DocType("secret string")]
"""A secret: only from `${ENV_VAR}` or the paired `<name>_file`; never printed."""

SecretFile = Annotated[Path, DocType("path")]
"""A file holding a secret (read at load time, trailing newline removed)."""

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name",
            "{value} is not a valid name: use lowercase letters, digits, '-' and '_',"
            " starting with a letter or digit (at most 63 characters)",
            {"value": repr(str(value))},
        )
    return value


Name = Annotated[str, BeforeValidator(_name), DocType("name")]
"""An identifier: `[a-z0-9][a-z0-9_-]*`. Channel names end up in topic names."""

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m and any(m.groups()):
            d, h, mi, s = (int(g or 0) for g in m.groups())
            return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    raise PydanticCustomError(
        "duration",
        "expected a duration such as 30s, 5m, 1h, 1h30m or 2d",
    )


Duration = Annotated[timedelta, BeforeValidator(_duration), DocType("duration")]
"""A duration written as `30s`, `5m`, `1h30m`, `2d` (or a number of seconds)."""

_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


def _language(value: Any) -> Any:
    if isinstance(value, str) and not _LANGUAGE.fullmatch(value):
        raise PydanticCustomError(
            "language",
            "expected a language code such as en, es or pt-BR",
        )
    return value


Language = Annotated[str, BeforeValidator(_language), DocType("language code")]
"""A BCP 47 language tag such as `en`, `es`, `pt-BR`."""

Priority = Literal["urgent", "high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "high", "normal", "low")

_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


def _email(value: Any) -> Any:
    if isinstance(value, str) and not _EMAIL.fullmatch(value):
        raise PydanticCustomError("email", "expected an email address such as support@example.com")
    return value


EmailAddress = Annotated[str, BeforeValidator(_email), DocType("email address")]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


NameList = Annotated[list[Name], BeforeValidator(_one_or_many), DocType("name or list of names")]
"""A list of names; a single name may be written without the brackets."""

StrList = Annotated[list[str], BeforeValidator(_one_or_many), DocType("string or list of strings")]
LanguageList = Annotated[
    list[Language],
    BeforeValidator(_one_or_many),
    DocType("language code or list of codes"),
]

Level = Annotated[int, Field(ge=1, le=5), DocType("level 1-5")]
"""A skill level: 1 (basic) to 5 (expert)."""

TimeZone = Annotated[str, DocType("IANA time zone")]
"""An IANA time zone name such as `Europe/Madrid` (checked with `check_timezone`)."""


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone",
            "unknown time zone {tz}: use an IANA name such as Europe/Madrid",
            {"tz": repr(value)},
        ) from None
    return value
