"""Building blocks shared by the config sections and the connectors' blocks.

Every config model derives from `Section`: unknown keys are errors, the
values are frozen, and a secret field `x` (a `Secret`, see `secrets`) may
instead be written `x_file: path`, the secret read from that file at load
time.
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
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from router.config.secrets import SecretRef, file_key, is_secret


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
        """`<name>_file: path` for a secret field `name`: the secret read from the file."""
        if not isinstance(data, dict):
            return data
        enabled = (info.context or {}).get("channel_enabled", True) is not False
        for name, field in cls.model_fields.items():
            key = file_key(name)
            if key not in data or not is_secret(field.annotation):
                continue
            data = dict(data)
            path = data.pop(key)
            if path is None:
                continue
            if data.get(name) is not None:
                raise fail(cls.__name__, (key,), f"set either {name} or {key}, not both")
            if not isinstance(path, str | Path) or not str(path):
                raise fail(cls.__name__, (key,), "expected the path of a file", path)
            if not enabled:
                data[name] = SecretRef(None, path=Path(path))  # need not exist yet
                continue
            try:
                data[name] = SecretRef.from_file(Path(path))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise fail(cls.__name__, (key,), f"cannot read {path}: {reason}") from None
        return data


Secret = Annotated[SecretRef, DocType("secret string")]
"""A secret: only from `${ENV_VAR}` or the paired `<name>_file`; never printed."""


def require_secret(model: BaseModel, name: str, why: str) -> None:
    """Refuse `model` when its secret `name` is not set; `why` says what needs it."""
    if getattr(model, name) is None:
        raise fail(type(model).__name__, (name,), f"{name} or {file_key(name)} is required: {why}")


def check_secret_chars(model: BaseModel, name: str, min_chars: int, what: str) -> None:
    """Refuse `model` when its secret `name` is known and shorter than `min_chars`."""
    ref = getattr(model, name)
    if isinstance(ref, SecretRef) and ref.known and len(ref.get_secret_value()) < min_chars:
        raise fail(
            type(model).__name__, (name,), f"{what} must have at least {min_chars} characters"
        )


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
