"""The one error tree.

Every error the core sees is an `OmniError`. `retriable` tells the caller what
to do: retry with backoff (the cause is outside the record: a broker down, a
lock timeout) or give up on this record and dead-letter it (the record itself
is bad). Library exceptions are wrapped at the boundary with `raise ... from`.
"""

from __future__ import annotations


class OmniError(Exception):
    """Root of every omnirouter error."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(OmniError):
    """The configuration is invalid; carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems) or "invalid configuration")


class ConfigProblem:
    """One mistake in a config file: where it is and what was expected."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self!s})"


class EnvelopeError(OmniError):
    """A record is not a valid envelope. Never retriable: dead-letter it."""

    retriable = False


class BusError(OmniError):
    """The bus could not produce, fetch or commit."""

    retriable = True


class RecordTooLargeError(BusError):
    """A record is over the bus's configured `max_record_bytes`: never produced, never
    retried; the caller dead-letters it or what it came from."""

    retriable = False


class StoreError(OmniError):
    """The store could not complete a transaction."""

    retriable = True


class ConnectorError(OmniError):
    """A connector failed to take in or send a message."""
