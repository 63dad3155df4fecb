"""The one logging setup: structlog, JSON lines in production, console on a TTY.

Personal data is redacted by default before anything is rendered: email
addresses keep only their domain, phone numbers their last two digits, and
tokens or secrets (by key name or by shape) are replaced entirely.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|credential", re.IGNORECASE
)
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# An international or long national number, with the usual separators.
_PHONE = re.compile(r"(?<![\w])\+?\d(?:[\s().-]?\d){6,14}(?![\w])")
# Telegram bot tokens, bearer tokens, long opaque credentials.
_TOKEN = re.compile(
    r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b[A-Za-z0-9_-]{40,}\b"
)
# Our own stable ids are 32 hex characters: keep them readable.
_OUR_ID = re.compile(r"^[0-9a-f]{32}$")


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "+" * match.group(0).startswith("+") + "*" * (len(digits) - 2) + digits[-2:]


def redact_text(text: str) -> str:
    """Redact emails, phone numbers and tokens inside free text."""
    if _OUR_ID.match(text):
        return text
    text = _TOKEN.sub(REDACTED, text)
    text = _EMAIL.sub(lambda m: "***@" + m.group(1), text)
    return _PHONE.sub(_mask_phone, text)


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def redact_personal_data(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every value of the event."""
    redacted = _redact(event_dict)
    assert isinstance(redacted, dict)
    return redacted


class _ToStructlog(logging.Handler):
    """Send records of libraries (aiokafka, aiohttp, alembic) through structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name
            )
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def _serialize(obj: MutableMapping[str, Any], **_: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def setup_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    redact: bool = True,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library's logging once, at start-up."""
    out = stream or sys.stdout
    numeric = logging.getLevelNamesMapping()[level.upper()]
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if redact:
        processors.append(redact_personal_data)
    if console:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory: Any = structlog.PrintLoggerFactory(out)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=_serialize))
        factory = structlog.BytesLoggerFactory(out.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ToStructlog):
            root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    # Libraries are chatty at INFO (aiokafka's group joins); keep them at WARNING.
    root.setLevel(max(numeric, logging.WARNING))
