"""The `phone:` block of a channel: call logs (CDRs) posted by a phone system."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from router.config.types import Duration, Secret, Section, require_secret


class PhoneChannelConfig(Section):
    """A phone line: the PBX or cloud telephony posts a signed record of every call."""

    webhook_path: str = Field(
        "/phone/cdr",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path on the HTTP listener that receives call records (unique per channel).",
    )
    hmac_secret: Secret | None = Field(
        None,
        description="Key of the HMAC-SHA256 signature over timestamp and body.",
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
    default_region: str = Field(
        "US",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country code for numbers written without a country code"
        " (to make them E.164).",
    )

    @model_validator(mode="after")
    def _secret(self) -> PhoneChannelConfig:
        require_secret(self, "hmac_secret", "records are signed")
        return self
