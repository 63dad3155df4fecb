"""The web chat's errors: all `ConnectorError`s, none retriable. Each carries the close
code the socket ends with (docs/webchat.md, "Limits and close codes").

- `BadFrame` (4400): not JSON, not a documented frame, or no `hello` first.
- `BadToken` (4401): a tampered or expired session token, a forged or expired identity token.
- `RateLimited` (4429): a session or client IP over its limit.
"""

from __future__ import annotations

from router.errors import ConnectorError


class WebchatError(ConnectorError):
    """Root of the web chat's errors; `code` is the WebSocket close code."""

    retriable = False
    code = 4400


class BadFrame(WebchatError):
    code = 4400


class BadToken(WebchatError):
    code = 4401


class RateLimited(WebchatError):
    code = 4429
