"""The `webchat:` block of a channel: the chat widget's WebSocket endpoint."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from router.config.types import Duration, Section


class WebchatChannelConfig(Section):
    """A web chat on your site, served over a WebSocket on the HTTP listener."""

    path: str = Field(
        "/chat",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path of the chat endpoint on the HTTP listener (unique per channel).",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) of the pages that may open the chat;"
        " empty: same origin only.",
    )
    session_ttl: Duration = Field(
        timedelta(hours=24),
        description="How long a visitor's session (and thread) lasts without activity.",
    )
    max_message_bytes: int = Field(
        16_384,
        ge=1,
        le=1_048_576,
        description="Largest chat message accepted.",
    )
    title: str = Field("Support", description="Title shown in the chat window.")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], e.g."
                    " https://shop.example.com",
                )
        return value
