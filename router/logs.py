"""The one logging setup: structlog, JSON lines in production, console on a TTY.

Personal data is redacted by default, in the processor chain, before anything
is rendered (our own events and the standard library's records of aiokafka,
aiohttp and alembic alike). Two rules, applied to every value at any depth:

- By field: a key that holds personal data or free text (`FREE_TEXT_FIELDS`:
  note, text, subject, name, address, from, to, value, args, detail...) keeps
  only a summary of its value, `[redacted: 23 chars]`, never the content.
  Keys that name secrets (password, token, api_key...) become `[redacted]`.
- Everything else is scrubbed as free text (`redact_text`): email addresses
  in any `local@host` form keep only their host, phone-shaped numbers their
  last two digits, tokens and IBANs go entirely, and quoted values that are
  not code-shaped (a library's `'Ana Pérez'`, `'x@host'`) become their length.
  Timestamps, times of day, UUIDs and hex ids (`_KEEP`) are found first and the
  number-shaped matchers (phones, tokens, IBANs) only see the text between
  them, so an id or a time is never half-masked; plain integers (byte counts,
  offsets, ports), versions and IP addresses are left alone too. Text longer
  than `MAX_TEXT` keeps its head and tail.

The scrubber is the safety net, not the plan: a call site logs ids, kinds,
counts and lengths, never a customer's or an agent's text nor a rejected raw
value (a rejected agent command logs a reason code; the full reason goes only
to the agent). `RateLimiter` is the one way to keep a repeating line (a
library's reconnect errors, refused requests) from flooding the log.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|credential", re.IGNORECASE
)
# Keys whose values are personal data or free text wherever they appear (compared
# case-insensitively): from the log calls in router/ and connectors/, the envelope's
# fields and the routing decisions' reasons.
FREE_TEXT_FIELDS = frozenset(
    {
        "address",
        "addresses",
        "args",
        "bcc",
        "body",
        "caption",
        "cc",
        "comment",
        "content",
        "detail",
        "display_name",
        "email",
        "first_name",
        "from",
        "full_name",
        "html",
        "identity_value",
        "last_name",
        "name",
        "note",
        "notes",
        "phone",
        "recipient",
        "recipients",
        "reply_to",
        "sender",
        "subject",
        "summary",
        "text",
        "to",
        "transcript",
        "username",
        "value",
    }
)
# Left as they are: written by structlog itself, never personal.
_OWN_KEYS = frozenset({"level", "timestamp", "logger"})

# Telegram bot tokens, bearer tokens, long opaque credentials.
_TOKEN = re.compile(
    r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b[A-Za-z0-9_-]{40,}\b"
)
# Any local@host, dotless hosts (`x@localhost`) included; bounded parts keep it linear.
_EMAIL = re.compile(r"[\w.!#$%&*+/=?^`{|}~-]{1,64}@([\w-]{1,63}(?:\.[\w-]{1,63})*)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# Phone-shaped only: a leading + with 7-15 digits, or 3-6 digit groups joined by spaces,
# dashes or parentheses. A bare integer (1048597 bytes), a time or a dotted version is not.
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[ ().-]{0,2}\d){6,14}(?!\d)"
    r"|(?<![\w.:+-])\(?\d{2,5}\)?(?:[ -]\d{2,5}){2,5}(?![\w.:-])"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# What is never personal and must come out as it went in: ISO timestamps (`T` or a space,
# any fraction, Z or an offset), times of day with seconds, UUIDs, and hex ids of 8 to
# 32 characters with a digit and a letter (ours are 32; a word or a plain number is not
# an id). Bounded on both sides so an id is never the middle of an address or a token.
_TIMESTAMP = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_TIME = r"\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_HEX_ID = r"(?=[0-9a-f]{0,31}[a-f])(?=[0-9a-f]{0,31}\d)[0-9a-f]{8,32}"
_KEPT = f"{_TIMESTAMP}|{_TIME}|{_UUID}|{_HEX_ID}"
_KEEP = re.compile(rf"(?<![\w.:+@/-])(?:{_KEPT})(?![\w@+/-]|[.:,]\d)")
# A quoted value (Python's repr, most libraries' messages) is data unless code-shaped:
# a name or path, a number, an IP address with its port, a timestamp or an id (a bare
# date may be a birthdate: not code-shaped).
_QUOTED = re.compile(r"""(?<![\w\\])(?:'([^'\n]{0,500})'|"([^"\n]{0,500})")(?!\w)""")
_CODE_SHAPED = re.compile(
    r"[A-Za-z_./][A-Za-z0-9_./:-]{0,99}|\d{1,20}|\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?"
    rf"|{_KEPT}"
)


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    if not 7 <= len(digits) <= 15 or _DATE.fullmatch(found.strip("()")):
        return found
    return "+" * found.startswith("+") + "*" * (len(digits) - 2) + digits[-2:]


def _mask_quoted(match: re.Match[str]) -> str:
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    if not inner or _CODE_SHAPED.fullmatch(inner):
        return match.group(0)
    return f"[redacted: {len(inner)} chars]"


# Longer free text keeps its head and tail (a traceback's last line says what failed):
# no log value is worth more, and scrubbing stays well under a millisecond per value.
MAX_TEXT = 16 * 1024


def redact_text(text: str) -> str:
    """Scrub emails, phone numbers, tokens, IBANs and quoted data out of free text,
    leaving timestamps and ids (`_KEEP`) exactly as they were."""
    if len(text) <= _SHORT:
        return _scrubbed_short(text)
    return _scrubbed(text)


# Most short values repeat line after line (event names, channels, kinds, actions,
# queues, agents): each is scrubbed once and looked up after that. The bound keeps the
# memory small; a value seen once (a record id) only passes through.
_SHORT = 64


@functools.lru_cache(maxsize=4096)
def _scrubbed_short(text: str) -> str:
    return _scrubbed(text)


def _scrubbed(text: str) -> str:
    if _KEEP.fullmatch(text):
        return text
    if len(text) > MAX_TEXT:
        half = MAX_TEXT // 2
        text = f"{text[:half]} [... {len(text) - MAX_TEXT} chars ...] {text[-half:]}"
    # Addresses first: a local part that looks like an id is still an address.
    text = _EMAIL.sub(lambda m: "***@" + m.group(1), text)
    text = _QUOTED.sub(_mask_quoted, text)
    # The number-shaped matchers never see a timestamp or an id: only the text between.
    out: list[str] = []
    start = 0
    for kept in _KEEP.finditer(text):
        out.append(_scrub_numbers(text[start : kept.start()]))
        out.append(kept.group(0))
        start = kept.end()
    out.append(_scrub_numbers(text[start:]))
    return "".join(out)


def _scrub_numbers(text: str) -> str:
    text = _TOKEN.sub(REDACTED, text)
    text = _IBAN.sub(REDACTED, text)
    return _PHONE.sub(_mask_phone, text)


def summary(value: Any) -> Any:
    """What a free-text field logs instead of its value: its kind and size."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return f"[redacted: {len(value)} chars]"
    if isinstance(value, bytes | bytearray):
        return f"[redacted: {len(value)} bytes]"
    if isinstance(value, Mapping):
        return f"[redacted: {len(value)} fields]"
    if isinstance(value, list | tuple | set | frozenset):
        return f"[redacted: {len(value)} items]"
    return REDACTED


def _redact(value: Any, depth: int = 0) -> Any:
    kind = type(value)
    if kind in _PLAIN_TYPES:  # most values of a line: nothing to read in them
        return value
    if kind is str or isinstance(value, str):
        return redact_text(value)
    if depth > 8:  # deeper than any event we write: not worth reading, so not shown
        return REDACTED
    # `type(...) is` first: an ABC's isinstance costs more than the rest of a plain value.
    if kind is dict or isinstance(value, Mapping):
        return _redact_fields(value, depth)
    if kind is list or isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, depth + 1) for v in value]
    return value


def _redact_fields(fields: Mapping[Any, Any], depth: int, own: frozenset[str] = frozenset()) -> Any:
    """Each field redacted by its key's rule; `own` keys (the line's level, time) kept.
    A line has about ten fields, most a number or a short repeated text: those are done
    here, not through `_redact` (a call each was half of a line's redaction)."""
    out = {}
    for key, value in fields.items():
        if key in own:
            out[key] = value
            continue
        rule = _key_rule(key) if isinstance(key, str) else _SCRUB
        if rule is not _SCRUB:
            out[key] = REDACTED if rule is _SECRET else summary(value)
            continue
        kind = type(value)
        if kind in _PLAIN_TYPES:
            out[key] = value
        elif kind is str:
            out[key] = redact_text(value)
        else:
            out[key] = _redact(value, depth + 1)
    return out


_SECRET, _FREE_TEXT, _SCRUB = "secret", "free text", "scrub"
_PLAIN_TYPES = frozenset({int, float, bool, type(None)})


@functools.lru_cache(maxsize=1024)
def _key_rule(key: str) -> str:
    """How a field's value is redacted, by its key (keys are few: decided once each)."""
    if _SECRET_KEY.search(key):
        return _SECRET
    if key.lower() in FREE_TEXT_FIELDS:
        return _FREE_TEXT
    return _SCRUB


def redact_personal_data(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every value of the event (see the module docstring)."""
    redacted: EventDict = _redact_fields(event_dict, 0, _OWN_KEYS)
    return redacted


@dataclass
class _Window:
    start: float
    count: int = 1
    suppressed: int = 0


class RateLimiter:
    """At most `burst` lines per key in each `interval` seconds; the rest are counted.

    `admit(key)` answers None for a line to drop, or the fields to log with one
    let through: `{"suppressed": n}` when n lines of that key were dropped since
    the last one shown (a key that falls silent keeps its last count unsaid).
    """

    def __init__(
        self,
        burst: int,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[Hashable, _Window] = {}

    def admit(self, key: Hashable) -> dict[str, int] | None:
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.start < self.interval:
            if window.count >= self.burst:
                window.suppressed += 1
                return None
            window.count += 1
            return {}
        suppressed = window.suppressed if window is not None else 0
        if window is None and len(self._windows) >= self._max_keys:
            self._forget(now)
            if len(self._windows) >= self._max_keys:  # that many live keys: do not limit
                return {}
        self._windows[key] = _Window(now)
        return {"suppressed": suppressed} if suppressed else {}

    def _forget(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.start >= self.interval:
                del self._windows[key]


# A library repeating one message (aiokafka: about 150 lines a second while the broker
# is down) shows it at most this often per logger and message template.
LIBRARY_BURST = 10
LIBRARY_INTERVAL = 60.0


class _ToStructlog(logging.Handler):
    """Send records of libraries (aiokafka, aiohttp, alembic) through structlog,
    with their exception and at most `limiter`'s rate per message template."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RateLimiter(LIBRARY_BURST, LIBRARY_INTERVAL)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
            fields: dict[str, Any] | None = self.limiter.admit((record.name, template))
            if fields is None:
                return
            if record.exc_info and record.exc_info[0] is not None:
                fields["exc_info"] = record.exc_info  # formatted, then redacted, downstream
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, **fields
            )
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def _serialize(obj: MutableMapping[str, Any], **_: Any) -> bytes:
    return orjson.dumps(obj, default=str)


class _Standard:
    """The process's stdout or stderr as it is when a line is written, not when logging
    was set up: a caller (a test capturing output) may swap it, and close the old one."""

    def __init__(self, name: Literal["stdout", "stderr"], *, binary: bool = False) -> None:
        self._name = name
        self._binary = binary

    def _target(self) -> Any:
        stream = getattr(sys, self._name)
        return stream.buffer if self._binary else stream

    def write(self, data: Any) -> Any:
        return self._target().write(data)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(getattr(sys, self._name).isatty())

    @property
    def buffer(self) -> _Standard:
        return _Standard(self._name, binary=True)


def setup_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    redact: bool = True,
    stream: TextIO | None = None,
    library_limiter: RateLimiter | None = None,
) -> None:
    """Configure structlog and the standard library's logging once, at start-up.

    `library_limiter` bounds library records (default: `LIBRARY_BURST` per
    `LIBRARY_INTERVAL` per message template; tests pass one with a fake clock).
    """
    out: Any = stream or sys.stdout
    # The standard streams are looked up at each write (see `_Standard`).
    if out is sys.stdout:
        out = _Standard("stdout")
    elif out is sys.stderr:
        out = _Standard("stderr")
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
    root.addHandler(_ToStructlog(library_limiter))
    # Libraries are chatty at INFO (aiokafka's group joins); keep them at WARNING.
    root.setLevel(max(numeric, logging.WARNING))
