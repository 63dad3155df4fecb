"""The `webchat:` block of a channel: the chat widget's WebSocket endpoint."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from router.config.types import Duration, Secret, Section, check_secret_chars

MIN_SECRET_CHARS = 16


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
    language: str | None = Field(
        None,
        pattern=r"^(en|es)$",
        description="The widget's language (`en` or `es`); null: the page's `lang`, else"
        " the browser's.",
    )
    session_key: Secret | None = Field(
        None,
        description="Key of the HMAC-SHA256 that signs visitors' session tokens"
        f" (at least {MIN_SECRET_CHARS} characters); the channel does not start without it.",
    )
    previous_session_key: Secret | None = Field(
        None,
        description="The key before the last rotation: its session tokens are still accepted"
        " (keep it for one `session_ttl`).",
    )
    identity_secret: Secret | None = Field(
        None,
        description="Key the shop's backend signs logged-in customers' identity tokens with"
        " (HMAC-SHA256 over id, email and expiry); null: no identity tokens are accepted.",
    )
    messages_per_minute: int = Field(
        30,
        ge=1,
        description="Visitor messages one session may send a minute; more closes"
        " the socket with the reason (4429).",
    )
    sessions_per_hour: int = Field(
        20,
        ge=1,
        description="New chat sessions one client IP may open an hour.",
    )
    heartbeat: Duration = Field(
        timedelta(seconds=25),
        description="How often the widget pings; a socket silent for twice this is closed.",
    )

    @model_validator(mode="after")
    def _keys(self) -> WebchatChannelConfig:
        # Required by the running connector (it refuses to start without it), not here:
        # a config naming the channel before its key exists still loads.
        for name in ("session_key", "previous_session_key", "identity_secret"):
            check_secret_chars(self, name, MIN_SECRET_CHARS, "the key")
        return self

    def keys(self) -> list[bytes]:
        """The session keys, current first (a rotated-out one verifies only)."""
        refs = [self.session_key, self.previous_session_key]
        return [r.get_secret_value().encode() for r in refs if r is not None]

    def identity_key(self) -> bytes | None:
        ref = self.identity_secret
        return None if ref is None else ref.get_secret_value().encode()

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
