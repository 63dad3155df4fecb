"""The `webhook:` block of a channel: agents' tools reached by signed JSON over HTTP."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from router.config.types import Duration, Secret, Section, check_secret_chars, require_secret
from router.connector import HttpRoute

MIN_SECRET_CHARS = 16


class WebhookChannelConfig(Section):
    """A webhook channel: deliveries POSTed to each agent's tool, their events POSTed back."""

    secret: Secret | None = Field(
        None,
        description="Key of the HMAC-SHA256 signatures: signs every delivery we POST and"
        f" verifies every event the tool POSTs back (at least {MIN_SECRET_CHARS} characters).",
    )
    timeout: Duration = Field(
        timedelta(seconds=10),
        description="How long one delivery POST may take before it is retried later"
        " (with the same `X-Omnirouter-Id`, so the tool can drop the repeat).",
    )
    max_body_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest event body taken in; larger ones are answered 413.",
    )
    max_clock_skew: Duration = Field(
        timedelta(minutes=5),
        description="Events signed longer ago (or further ahead) than this are refused (401).",
    )
    path: str | None = Field(
        None,
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path on the HTTP listener that takes the tool's events (replies,"
        " commands, accept); unique per channel (null: `/webhook/<channel name>/events`).",
    )

    @model_validator(mode="after")
    def _secret(self) -> WebhookChannelConfig:
        require_secret(
            self,
            "secret",
            "it signs the deliveries and proves that events come from the agents' tool",
        )
        check_secret_chars(self, "secret", MIN_SECRET_CHARS, "the signing key")
        return self

    def events_path(self, channel: str) -> str:
        """Where the tool POSTs its events for the channel named `channel`."""
        return self.path or f"/webhook/{channel}/events"

    def http_routes(self, channel: str) -> list[HttpRoute]:
        """The events route of the channel named `channel`."""
        return [HttpRoute("POST", self.events_path(channel), ("path",))]

    def key(self) -> bytes:
        """The signing key (from `${VAR}`, or from `secret_file` at load time)."""
        if self.secret is None:
            raise ValueError("the webhook channel has no signing key")
        # A disabled channel's key may be unread: get_secret_value() says so.
        return self.secret.get_secret_value().encode()
