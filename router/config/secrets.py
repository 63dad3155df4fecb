"""The one secret-reference type every config block uses.

A secret field `x` is written in the YAML one of two ways, never inline:

    x: ${ENV_VAR}          # from the environment
    x_file: /run/secrets/x # from a file, read at load time (trailing newline removed)

Either way the model holds one `SecretRef` in `x` (`x_file` is not a field of
its own): the value, and the file it came from (so a connector may re-read it
to pick up a rotated secret without a reload). A `SecretRef` prints as
`**********` in reprs, logs and JSON; only `get_secret_value()` gives it.

Inside a disabled channel an unset `${NAME}` or an `x_file` is accepted
without being read (`known` is False): its credentials need not exist yet.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from router.config.source import Interpolated, Unresolved

MASK = "**********"


class SecretRef:
    """A secret, from the environment or a file. Compared by value and file."""

    __slots__ = ("_value", "path")

    def __init__(self, value: str | None, *, path: Path | None = None) -> None:
        self._value = value  # None: a disabled channel's file, not read
        self.path = path

    @classmethod
    def from_file(cls, path: Path) -> SecretRef:
        """The secret in `path`; raises OSError or UnicodeDecodeError."""
        return cls(_read(path), path=path)

    @property
    def known(self) -> bool:
        """False for what a disabled channel may leave unresolved or unread."""
        return self._value is not None and not isinstance(self._value, Unresolved)

    def get_secret_value(self) -> str:
        """The secret; an unset `${NAME}` as written (a disabled channel never uses it)."""
        if self._value is None:
            raise ValueError(f"secret {self!r} was not read (is its channel disabled?)")
        return str(self._value)

    def current(self) -> str:
        """The secret as it is now: read again from its file when it came from one, so a
        rotated file is used from the next login on, without a reload; raises OSError or
        UnicodeDecodeError."""
        return self.get_secret_value() if self.path is None else _read(self.path)

    def __repr__(self) -> str:
        where = f", file={str(self.path)!r}" if self.path is not None else ""
        return f"SecretRef({MASK!r}{where})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self._value, self.path) == (other._value, other.path)

    def __hash__(self) -> int:
        return hash((self._value, self.path))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.with_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def _validate(value: Any, info: ValidationInfo) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("secret", "expected a string such as {example}", _EXAMPLE)
    context = info.context or {}
    if context.get("strict_secrets") and not from_environment(value):
        raise PydanticCustomError(
            "literal_secret",
            "secrets must not be written in the file: use {example} or {name}_file: /path/to/file",
            {**_EXAMPLE, "name": info.field_name or "secret"},
        )
    return SecretRef(value)


_EXAMPLE = {"example": "${ENV_VAR}"}


def from_environment(value: str) -> bool:
    """True when a string came from the environment, not written in the file."""
    if isinstance(value, Interpolated):
        return value.env_only
    return isinstance(value, Unresolved)


def is_secret(annotation: Any) -> bool:
    """Whether a field's annotation holds a `SecretRef` (under Optional or Annotated)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return is_secret(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(is_secret(a) for a in get_args(annotation))
    return annotation is SecretRef


def file_key(name: str) -> str:
    return f"{name}_file"
