"""The `webchat:` block of a channel: the chat widget's WebSocket endpoint."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, ValidationInfo, field_validator, model_validator

from router.config.types import (
    Duration,
    Name,
    Secret,
    Section,
    check_secret_chars,
    require_secret,
)
from router.connector import HttpRoute

MIN_SECRET_CHARS = 16
MIN_CONTRAST = 4.5  # WCAG AA for normal text
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
FormField = Literal["name", "email", "phone", "topic"]
# The widget strings an operator may reword, per language (the rest stay ours).
TEXT_KEYS = ("open", "greeting", "consent", "closed", "leave")
Lang = Literal["en", "es"]


def _luminance(hex_color: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two `#rrggbb` colours (1 to 21)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


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
    max_attachment_bytes: int = Field(
        5_242_880,
        ge=0,
        le=52_428_800,
        description="Largest file a visitor may attach (PNG, JPEG, GIF, WebP, PDF or plain"
        " text, read from the bytes); 0: no attachments.",
    )
    title: str = Field("Support", description="Title shown in the chat window.")
    color: str = Field(
        "#0b5394",
        pattern=HEX.pattern,
        description="Main colour (`#rrggbb`): the header, the launcher, the visitor's messages.",
    )
    text_color: str = Field(
        "#ffffff",
        pattern=HEX.pattern,
        description=f"Text on the main colour; the pair must contrast at least {MIN_CONTRAST}:1.",
    )
    form: list[FormField] = Field(
        default_factory=list,
        description="Pre-chat form fields asked before the first message (`name`, `email`,"
        " `phone`, `topic`); empty: no form. A typed email or phone is only a stated identity.",
    )
    topics: list[str] = Field(
        default_factory=list,
        description="The choices of the form's `topic` (empty: free text).",
    )
    texts: dict[Lang, dict[str, str]] = Field(
        default_factory=dict,
        description="The widget's own words reworded, per language: `open` (the launcher),"
        " `greeting` (above the form), `consent` (the line the visitor agrees to before"
        " giving details), `closed` (out of hours; `{opens}` is when we open), `leave` (the"
        " leave-a-message button).",
    )
    language: str | None = Field(
        None,
        pattern=r"^(en|es)$",
        description="The widget's language (`en` or `es`); null: the page's `lang`, else"
        " the browser's.",
    )
    session_key: Secret | None = Field(
        None,
        description="Key of the HMAC-SHA256 that signs visitors' session tokens"
        f" (at least {MIN_SECRET_CHARS} characters); required when the channel is enabled.",
    )
    previous_session_key: Secret | None = Field(
        None,
        description="The key before the last rotation: its session tokens are still accepted"
        " (keep it for one `session_ttl`).",
    )
    identity_secret: Secret | None = Field(
        None,
        description="Key the shop's backend signs logged-in customers' identity tokens with"
        " (HMAC-SHA256 over id, email and expiry, or a JWT signed HS256; 32 characters or"
        " more for JWT); null: no identity tokens are accepted.",
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
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        max_length=64,
        description="Reverse proxies (addresses or CIDR networks) in front of the daemon:"
        " a request from one of them is counted against the client address its"
        " X-Forwarded-For names (the nearest entry that is not one of these); empty: the"
        " peer address is the client's (behind a proxy, every visitor would share its limit).",
    )
    answer_by_email: Name | None = Field(
        None,
        description="The email channel (by name) that answers a visitor who gave their email"
        ' and ticked "answer me by email": agents\' replies go there too, threaded, and'
        " the widget offers the transcript by email. It must be an enabled channel whose"
        " type writes to an email address. Null: answers in the chat only, no transcript.",
    )
    heartbeat: Duration = Field(
        timedelta(seconds=25),
        description="How often the widget pings; a socket silent for twice this is closed.",
    )

    @model_validator(mode="after")
    def _keys(self, info: ValidationInfo) -> WebchatChannelConfig:
        # An enabled chat needs its session key (`check` says so, not only the start); a
        # disabled one, or a command that starts no channel, may name it before it exists.
        if (info.context or {}).get("channel_enabled", True) is not False:
            require_secret(self, "session_key", "the chat signs its visitors' sessions with it")
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

    @model_validator(mode="after")
    def _readable(self) -> WebchatChannelConfig:
        ratio = contrast(self.color, self.text_color)
        if ratio < MIN_CONTRAST:
            raise ValueError(
                f"text_color {self.text_color} on color {self.color} contrasts {ratio:.1f}:1;"
                f" at least {MIN_CONTRAST}:1 is readable (WCAG AA)"
            )
        return self

    @field_validator("texts")
    @classmethod
    def _text_keys(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for lang, words in value.items():
            unknown = sorted(set(words) - set(TEXT_KEYS))
            if unknown:
                raise ValueError(
                    f"texts.{lang}: unknown {', '.join(unknown)}; known: {', '.join(TEXT_KEYS)}"
                )
        return value

    def http_routes(self, channel: str) -> list[HttpRoute]:
        """What the connector mounts under `path`, in the order its handlers take them: the
        socket and its sub-paths."""
        base = self.path.rstrip("/")
        mounts = [
            ("GET", base or "/"),
            ("POST", f"{base}/http"),
            ("POST", f"{base}/poll"),
            ("GET", f"{base}/widget.js"),
            ("POST", f"{base}/upload"),
            ("GET", f"{base}/file/{{visitor}}/{{sha}}/{{sig}}/{{name}}"),
            ("GET", f"{base}/v/{{version}}/{{file}}"),
        ]
        return [HttpRoute(method, path, ("path",)) for method, path in mounts]

    def widget(self) -> dict[str, object]:
        """What the widget shows from this block (the `welcome` frame's `look`)."""
        return {
            "color": self.color,
            "text_color": self.text_color,
            "form": list(self.form),
            "topics": list(self.topics),
            "texts": {lang: dict(words) for lang, words in self.texts.items()},
            "by_email": self.answer_by_email is not None,
        }

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
