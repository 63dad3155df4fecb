"""The `phone:` block of a channel: where call logs come from and how to read them.

Three sources, any of them: a call-detail-record file the PBX appends to
(`cdr`), a signed JSON call-event webhook (`webhook_path`), Twilio Voice
status callbacks (`twilio`). docs/phone.md has the shapes and the mapping.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from router.config.types import Duration, Secret, Section, require_secret
from router.connector import HttpRoute

# Asterisk cdr_csv's Master.csv, in order; the last five only when the PBX logs them.
ASTERISK_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
)


class CdrFileConfig(Section):
    """A CDR file the PBX appends one CSV line per call to (Asterisk's Master.csv by default)."""

    path: Path = Field(description="The file, e.g. /var/log/asterisk/cdr-csv/Master.csv.")
    columns: list[str] = Field(
        default_factory=lambda: list(ASTERISK_COLUMNS),
        min_length=1,
        description="The names of the file's columns, in order (default: Asterisk cdr_csv's;"
        " a row may stop after `amaflags`). Another layout names its columns with ours:"
        " src, dst, clid, channel, dstchannel, lastapp, start, answer, end, duration, billsec,"
        " disposition, uniqueid, linkedid; any other name is kept as a call fact.",
    )
    time_format: str = Field(
        "%Y-%m-%d %H:%M:%S",
        description="How `start`, `answer` and `end` are written (strptime), in `timezone`.",
    )
    poll_interval: Duration = Field(
        timedelta(seconds=1),
        description="How often the end of the file is checked for new lines.",
    )


class TwilioConfig(Section):
    """Twilio Voice status, recording and transcription callbacks."""

    path: str = Field(
        "/phone/twilio",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path on the HTTP listener that Twilio's callbacks are POSTed to.",
    )
    auth_token: Secret | None = Field(
        None, description="The account's auth token: it signs every callback."
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/]+",
        description="The URL Twilio is configured to call, without the query (behind a proxy"
        " it differs from the one the daemon sees, and the signature covers it; null: the"
        " request's own URL).",
    )

    @model_validator(mode="after")
    def _secret(self) -> TwilioConfig:
        require_secret(self, "auth_token", "Twilio signs every callback with it")
        return self


class PhoneChannelConfig(Section):
    """A phone line: every call the PBX logs becomes a `call` envelope."""

    webhook_path: str | None = Field(
        "/phone/cdr",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path on the HTTP listener that receives signed JSON call events"
        " (unique per channel; null: no call-event webhook).",
    )
    hmac_secret: Secret | None = Field(
        None,
        description="Key of the HMAC-SHA256 signature over timestamp and body"
        " (required with `webhook_path`).",
    )
    signature_header: str = Field(
        "X-Omni-Signature",
        min_length=1,
        description="Header carrying the hex signature.",
    )
    timestamp_header: str = Field(
        "X-Omni-Timestamp",
        min_length=1,
        description="Header carrying the Unix timestamp.",
    )
    max_clock_skew: Duration = Field(
        timedelta(minutes=5),
        description="Records signed longer ago (or ahead) are refused.",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest call event or callback taken in (413 above)."
    )
    default_region: str = Field(
        "US",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country code for numbers written without a country code"
        " (to make them E.164).",
    )
    timezone: str = Field(
        "UTC",
        description="The PBX's time zone (IANA name, e.g. Europe/Madrid): call records"
        " that carry no offset are read in it.",
    )
    agents: dict[str, str] = Field(
        default_factory=dict,
        description="Agent extension -> agent id (`201: ana`): who answered or placed a call.",
    )
    extension_digits: int = Field(
        5,
        ge=1,
        le=8,
        description="A number of at most this many digits is an internal extension, not a"
        " customer's (a call from one is an outbound call).",
    )
    queue_apps: list[str] = Field(
        default_factory=lambda: ["Queue"],
        description="PBX applications that hold a caller in a queue: an unanswered call that"
        " ended in one was abandoned (after waiting its duration), not merely missed.",
    )
    voicemail_apps: list[str] = Field(
        default_factory=lambda: ["VoiceMail"],
        description="PBX applications that take a voicemail: a call answered by one is a"
        " voicemail.",
    )
    cdr: CdrFileConfig | None = Field(
        None, description="A call-detail-record file to tail (null: none)."
    )
    twilio: TwilioConfig | None = Field(None, description="Twilio Voice callbacks (null: none).")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Madrid)"
            ) from None
        return value

    @model_validator(mode="after")
    def _secret(self) -> PhoneChannelConfig:
        if self.webhook_path is not None:
            require_secret(self, "hmac_secret", "call events are signed")
        return self

    def http_routes(self, channel: str) -> list[HttpRoute]:
        """The call-event webhook and Twilio's callbacks, each when configured."""
        routes = []
        if self.webhook_path is not None:
            routes.append(HttpRoute("POST", self.webhook_path, ("webhook_path",)))
        if self.twilio is not None:
            routes.append(HttpRoute("POST", self.twilio.path, ("twilio", "path")))
        return routes

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
