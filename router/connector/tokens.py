"""The conversation token's shape: the one parser the router and every connector use.

A token is `<conversation id>.<signature>`. The router issues and verifies it
(`router.routing.tokens`, which holds the key); a connector only carries it
and reads the conversation it names, for the thread key that keeps one
conversation's replies and commands in order. What a connector reads is
unverified: the router checks the signature before acting on it.
"""

from __future__ import annotations

import re

SEPARATOR = "."
MAX_CHARS = 256  # issued tokens have 57; a longer one names nothing worth a thread key
# What the router issues: a conversation id (32 hex, see router.store.routing) and the
# first 15 bytes of an HMAC-SHA256 in lowercase base32 (24 characters).
ISSUED = re.compile(r"([0-9a-f]{32})\.([a-z2-7]{24})")


def split(token: str) -> tuple[str, str] | None:
    """`(conversation id, signature)`, or None when `token` is not of the token's shape."""
    if len(token) > MAX_CHARS:
        return None
    conversation_id, sep, signature = token.partition(SEPARATOR)
    return (conversation_id, signature) if sep and conversation_id and signature else None


def conversation_of(token: str | None) -> str | None:
    """The conversation a token names (not verified), or None."""
    if not token:
        return None
    parts = split(token)
    return parts[0] if parts is not None else None
