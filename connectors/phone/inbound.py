"""Call records → `call` envelopes. Pure: no I/O, no clock but the one passed in.

Three inputs share one mapping (`Facts` → `Reader.envelope`): a CDR row
(Asterisk cdr_csv by default, any layout by column names), a JSON call event,
Twilio's form-encoded callbacks. The customer is the party that is not us: the
caller of an inbound call, the callee of an outbound one, in E.164 with the
channel's default region; the thread is that number. The envelope id is the
phone system's own call id (uniqueid, `call_id`, CallSid), so one call seen
twice (re-read, or from the file and the webhook) is one envelope. A record
that only adds to a call (its recording, its transcript) gets an id of its own
derived from the call's, and names the call in `call.id`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, get_args
from zoneinfo import ZoneInfo

import orjson

from connectors.phone.config import ASTERISK_COLUMNS, PhoneChannelConfig
from connectors.phone.errors import BadCall
from router.blobs import BlobStore
from router.envelope import (
    MAX_ID,
    Call,
    CallDirection,
    Disposition,
    Envelope,
    Sender,
    envelope_id,
)
from router.routing.identity import PHONE, IdentityError, normalize_identity

TYPE = "phone"
DISPOSITIONS: frozenset[str] = frozenset(get_args(Disposition))
MAX_TEXT = 65_536  # a voicemail transcript; longer ones are cut

# Asterisk's dispositions; NO ANSWER is refined by the last application (queue: abandoned).
_CDR_DISPOSITIONS = {
    "ANSWERED": "answered",
    "NO ANSWER": "missed",
    "BUSY": "busy",
    "FAILED": "failed",
    "CONGESTION": "failed",
}
# The CDR columns the mapping reads; the others are kept in `meta.cdr`.
_READ = frozenset(
    "src dst clid channel dstchannel lastapp start answer end duration billsec disposition"
    " uniqueid".split()
)
# `PJSIP/201-0000002a`, `SIP/201-1`, `Local/201@from-queue-...;1`: the extension.
_DEVICE = re.compile(r"^[^/]+/([^-@;/]+)")
_CLID = re.compile(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$')

# Twilio's final CallStatus values; the others (queued, ringing, in-progress) are not
# a call's end and are refused, so a callback subscribed to them logs nothing twice.
_TWILIO_STATUS = {
    "completed": "answered",
    "busy": "busy",
    "failed": "failed",
    "no-answer": "missed",
    "canceled": "abandoned",
}


@dataclass(kw_only=True, slots=True)
class Facts:
    """One call (or an addition to one), as any source tells it."""

    call_id: str
    direction: CallDirection
    customer: str  # the customer's number as the source wrote it
    customer_name: str | None = None
    disposition: str | None = None
    started: datetime | None = None
    answered: datetime | None = None
    ended: datetime | None = None
    duration: int | None = None
    talk: int | None = None
    wait: int | None = None
    extension: str | None = None
    recording: str | None = None
    transcript: str | None = None
    addition: str | None = None  # what an addition is ("recording:<sid>"); None: the call
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Reader:
    """One channel's way of reading call records."""

    channel: str
    region: str
    zone: ZoneInfo
    agents: Mapping[str, str]
    extension_digits: int
    queue_apps: frozenset[str]
    voicemail_apps: frozenset[str]
    columns: tuple[str, ...]
    time_format: str

    @classmethod
    def of(cls, channel: str, cfg: PhoneChannelConfig) -> Reader:
        cdr = cfg.cdr
        return cls(
            channel=channel,
            region=cfg.default_region,
            zone=cfg.zone(),
            agents=dict(cfg.agents),
            extension_digits=cfg.extension_digits,
            queue_apps=frozenset(a.casefold() for a in cfg.queue_apps),
            voicemail_apps=frozenset(a.casefold() for a in cfg.voicemail_apps),
            columns=tuple(cdr.columns) if cdr else ASTERISK_COLUMNS,
            time_format=cdr.time_format if cdr else "%Y-%m-%d %H:%M:%S",
        )

    # --- the one mapping -----------------------------------------------------------------

    def envelope(self, facts: Facts, received_at: datetime) -> Envelope:
        """The `call` envelope of `facts`; raises `BadCall` naming the field."""
        try:
            number = normalize_identity(PHONE, facts.customer, default_region=self.region).value
        except IdentityError as exc:
            side = "from" if facts.direction == "inbound" else "to"
            raise BadCall(f"{side}: not a customer's number we can call back ({exc})") from None
        if facts.disposition is not None and facts.disposition not in DISPOSITIONS:
            raise BadCall(f"disposition: unknown {facts.disposition!r}")
        if len(facts.call_id) > MAX_ID:
            raise BadCall(f"call id: longer than {MAX_ID} characters")
        duration = facts.duration
        if duration is None:
            duration = _seconds(facts.started, facts.ended)
        talk = facts.talk
        if talk is None:
            talk = _seconds(facts.answered, facts.ended) if facts.answered else 0
        wait = facts.wait
        if wait is None:
            wait = _seconds(facts.started, facts.answered) if facts.answered else duration
        call = Call(
            id=facts.call_id,
            direction=facts.direction,
            disposition=facts.disposition,  # type: ignore[arg-type]  # checked above
            started_at=_utc(facts.started),
            answered_at=_utc(facts.answered),
            ended_at=_utc(facts.ended),
            duration=max(duration, 0),
            talk=max(talk, 0),
            wait=max(wait, 0),
            agent=self.agents.get(facts.extension) if facts.extension else None,
            recording=facts.recording,
        )
        native = facts.call_id if facts.addition is None else f"{facts.call_id}\x1f{facts.addition}"
        meta = dict(facts.meta)
        if facts.extension:
            meta["extension"] = facts.extension
        return Envelope(
            id=envelope_id(self.channel, native),
            kind="call",
            direction="in",
            channel=self.channel,
            channel_type=TYPE,
            thread_key=number,
            sender=Sender(address=number, name=facts.customer_name or None, role="customer"),
            sent_at=_utc(facts.ended or facts.started),
            received_at=received_at,
            text=(facts.transcript or "")[:MAX_TEXT] or _summary(call),
            call=call,
            meta=meta,
        )

    def is_extension(self, number: str) -> bool:
        """An internal extension (ours), not a customer's number."""
        n = number.strip()
        return n in self.agents or (n.isdigit() and len(n) <= self.extension_digits)

    # --- CDR rows ------------------------------------------------------------------------

    def split(self, line: str) -> dict[str, str]:
        """One CSV line as {column: value}; a row may stop early (optional trailing columns)."""
        try:
            values = next(csv.reader([line], strict=True))
        except (csv.Error, StopIteration) as exc:
            raise BadCall(f"not a CSV row: {exc}") from None
        if len(values) > len(self.columns):
            raise BadCall(f"{len(values)} columns; the layout has {len(self.columns)}")
        return dict(zip(self.columns, values, strict=False))

    def cdr(self, row: Mapping[str, str], received_at: datetime) -> Envelope:
        """A CDR row (column name → value) as its `call` envelope."""
        src, dst = row.get("src", "").strip(), row.get("dst", "").strip()
        outbound = self.is_extension(src) and not self.is_extension(dst)
        name, clid_number = _clid(row.get("clid", ""))
        if outbound:
            customer, device, name = dst, row.get("channel", ""), None
        else:
            customer, device = src or clid_number, row.get("dstchannel", "")
        extension = _extension(device) or (src if outbound else None)
        if not extension and not outbound and self.is_extension(dst):
            extension = dst
        raw = row.get("disposition", "").strip().upper()
        disposition = _CDR_DISPOSITIONS.get(raw)
        if disposition is None:
            raise BadCall(f"disposition: unknown {raw!r}")
        app = row.get("lastapp", "").strip().casefold()
        if disposition == "answered" and app in self.voicemail_apps:
            disposition = "voicemail"
        elif disposition == "missed" and app in self.queue_apps:
            disposition = "abandoned"
        started = self._time(row, "start", required=True)
        answered = self._time(row, "answer")
        if disposition in {"missed", "abandoned", "busy", "failed"}:
            answered = None  # Asterisk writes the start time there on some versions
        ended = self._time(row, "end")
        duration = _int(row, "duration")
        talk = _int(row, "billsec")
        native = (
            row.get("uniqueid", "").strip()
            or row.get("linkedid", "").strip()
            or "row:" + _row_hash(row)
        )
        return self.envelope(
            Facts(
                call_id=native,
                direction="outbound" if outbound else "inbound",
                customer=customer,
                customer_name=name,
                disposition=disposition,
                started=started,
                answered=answered,
                ended=ended,
                duration=duration,
                talk=talk if disposition in {"answered", "voicemail"} else 0,
                wait=None if duration is None or talk is None else duration - talk,
                extension=extension,
                meta={"cdr": {k: v for k, v in row.items() if k not in _READ and v}},
            ),
            received_at,
        )

    def _time(
        self, row: Mapping[str, str], name: str, *, required: bool = False
    ) -> datetime | None:
        text = row.get(name, "").strip()
        if not text:
            if required:
                raise BadCall(f"{name}: missing")
            return None
        try:
            return datetime.strptime(text, self.time_format).replace(tzinfo=self.zone)
        except ValueError:
            raise BadCall(f"{name}: {text!r} is not a time as {self.time_format!r}") from None

    # --- JSON call events ----------------------------------------------------------------

    def event(self, body: bytes, received_at: datetime) -> Envelope:
        """A JSON call event (docs/phone.md) as its `call` envelope."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadCall("body: not JSON") from None
        if not isinstance(obj, dict):
            raise BadCall("body: expected a JSON object")
        unknown = sorted(set(obj) - EVENT_FIELDS)
        if unknown:
            raise BadCall(f"{unknown[0]}: unknown field")
        direction = _need(obj, "direction")
        if direction not in ("inbound", "outbound"):
            raise BadCall("direction: expected inbound or outbound")
        call_id = _need(obj, "call_id")
        disposition = _text(obj, "disposition")
        transcript = _text(obj, "transcript", limit=MAX_TEXT)
        recording = _text(obj, "recording_url", limit=2000)
        if disposition is None and transcript is None and recording is None:
            raise BadCall("disposition: missing (a call's record needs one)")
        addition = None
        if disposition is None:
            addition = "transcript" if transcript is not None else "recording"
        started = self._iso(obj, "started_at")
        if disposition is not None and started is None:
            raise BadCall("started_at: missing")
        party = _need(obj, "from" if direction == "inbound" else "to")
        wait = obj.get("queue_wait")
        if wait is not None and (not isinstance(wait, int) or isinstance(wait, bool) or wait < 0):
            raise BadCall("queue_wait: expected whole seconds")
        return self.envelope(
            Facts(
                call_id=call_id,
                direction=direction,  # type: ignore[arg-type]  # checked above
                customer=party,
                customer_name=_text(obj, "caller_name", limit=200),
                disposition=disposition,
                started=started,
                answered=self._iso(obj, "answered_at"),
                ended=self._iso(obj, "ended_at"),
                wait=wait,
                extension=_text(obj, "agent_extension", limit=100),
                recording=recording,
                transcript=transcript,
                addition=addition,
            ),
            received_at,
        )

    def _iso(self, obj: Mapping[str, Any], name: str) -> datetime | None:
        text = _text(obj, name, limit=64)
        if text is None:
            return None
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise BadCall(f"{name}: not an ISO 8601 time") from None
        return when if when.tzinfo else when.replace(tzinfo=self.zone)

    # --- Twilio callbacks ----------------------------------------------------------------

    def twilio(self, params: Mapping[str, str], received_at: datetime) -> Envelope:
        """A Twilio status, recording or transcription callback as a `call` envelope."""
        sid = params.get("CallSid", "").strip()
        if not sid:
            raise BadCall("CallSid: missing")
        direction: CallDirection = (
            "inbound" if params.get("Direction", "inbound") == "inbound" else "outbound"
        )
        customer = params.get("From" if direction == "inbound" else "To", "")
        agent_side = params.get("To" if direction == "inbound" else "From", "")
        extension = agent_side.removeprefix("client:") if agent_side.startswith("client:") else None
        base = Facts(
            call_id=sid,
            direction=direction,
            customer=customer,
            customer_name=params.get("CallerName") or None,
            extension=extension,
        )
        if "TranscriptionSid" in params:
            # <Record transcribe="true">: a voicemail the caller left.
            return self.envelope(
                replace(
                    base,
                    disposition="voicemail",
                    transcript=params.get("TranscriptionText", ""),
                    recording=params.get("RecordingUrl") or None,
                    addition=f"transcript:{params['TranscriptionSid']}",
                ),
                received_at,
            )
        if "RecordingSid" in params:
            return self.envelope(
                replace(
                    base,
                    recording=params.get("RecordingUrl") or None,
                    duration=_int(params, "RecordingDuration"),
                    addition=f"recording:{params['RecordingSid']}",
                ),
                received_at,
            )
        status = params.get("CallStatus", "")
        disposition = _TWILIO_STATUS.get(status)
        if disposition is None:
            raise BadCall(
                f"CallStatus: {status!r} is not a call's end (subscribe to `completed` only)"
            )
        ended = _rfc2822(params.get("Timestamp", "")) or received_at
        duration = _int(params, "CallDuration") or 0
        return self.envelope(
            replace(
                base,
                disposition=disposition,
                started=ended - timedelta(seconds=duration),
                ended=ended,
                duration=duration,
                talk=duration if disposition == "answered" else 0,
                wait=0 if disposition == "answered" else duration,
            ),
            received_at,
        )


EVENT_FIELDS = frozenset(
    {
        "call_id",
        "from",
        "to",
        "direction",
        "caller_name",
        "started_at",
        "answered_at",
        "ended_at",
        "disposition",
        "queue_wait",
        "agent_extension",
        "recording_url",
        "transcript",
    }
)


def _summary(call: Call) -> str:
    """What an agent reads in the transcript for a call without words of its own."""
    what = call.disposition or "update to"
    text = f"{what} {call.direction} call"
    if call.disposition == "answered":
        return f"{text}, {call.talk} s"
    if call.disposition in {"missed", "abandoned"}:
        return f"{text}, waited {call.wait} s"
    return text


def _text(
    obj: Mapping[str, Any], name: str, *, required: bool = False, limit: int = MAX_ID
) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise BadCall(f"{name}: missing")
        return None
    if not isinstance(value, str):
        raise BadCall(f"{name}: expected a string")
    if len(value) > limit:
        raise BadCall(f"{name}: longer than {limit} characters")
    return value


def _need(obj: Mapping[str, Any], name: str) -> str:
    value = _text(obj, name, required=True)
    assert value is not None  # required: _text raised
    return value


def _int(row: Mapping[str, str], name: str) -> int | None:
    text = row.get(name, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise BadCall(f"{name}: {text[:20]!r} is not whole seconds")
    return int(text)


def _seconds(a: datetime | None, b: datetime | None) -> int:
    return int((b - a).total_seconds()) if a and b else 0


def _clid(clid: str) -> tuple[str | None, str]:
    """`"Ana Pérez" <600112233>` → (name, number)."""
    m = _CLID.match(clid)
    if m is None:
        return None, clid.strip()
    return m.group(1).strip() or None, m.group(2).strip()


def _extension(device: str) -> str | None:
    m = _DEVICE.match(device.strip())
    return m.group(1) if m else None


def _row_hash(row: Mapping[str, str]) -> str:
    """A row without a uniqueid: its id from what identifies a call (stable across re-reads)."""
    key = "\x1f".join(row.get(c, "") for c in ("channel", "src", "dst", "start", "dstchannel"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _utc(when: datetime | None) -> datetime | None:
    """A call's moment as the bus carries it: in UTC, whatever zone the PBX wrote."""
    return when.astimezone(UTC) if when is not None else None


def _rfc2822(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else None


def normalize_cli(
    raw: bytes, channel: str, blobs: BlobStore, settings: PhoneChannelConfig | None
) -> Envelope:
    """The `ConnectorSpec.normalize` entry point (`omnirouter normalize --type phone`): one
    CDR row (the channel's columns, time zone and region) or one JSON call event. Without
    settings, the block's defaults (Asterisk's columns, UTC, region US)."""
    # Nothing is listened to here: no webhook, so no signing secret is needed.
    reader = Reader.of(channel, settings or PhoneChannelConfig(webhook_path=None))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadCall(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    received_at = datetime.now(UTC)
    if text.lstrip().startswith("{"):
        return reader.event(raw, received_at)
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != 1:
        raise BadCall(f"expected one CDR row or one JSON call event; got {len(rows)} lines")
    return reader.cdr(reader.split(rows[0]), received_at)
