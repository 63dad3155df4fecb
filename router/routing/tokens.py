"""Signed conversation tokens: proof that a reply comes from the notification we sent.

A token is `<conversation id>.<signature>` (its shape is `router.connector.tokens`,
the parser connectors share); the signature is an HMAC-SHA256 of
the conversation and the agent it was issued to, so a token leaked from one
agent's mailbox is worthless to another. Checked in constant time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from router.connector.tokens import conversation_of

__all__ = ["conversation_of", "issue", "verify"]


# A conversation's deliveries go to the same agent again and again, and base32 is
# written in Python (about 10 µs with the MAC): each pair is signed once.
@functools.lru_cache(maxsize=4096)
def _signature(key: bytes, conversation_id: str, agent_id: str) -> str:
    mac = hmac.new(key, f"{conversation_id}\x1f{agent_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:15]).decode("ascii").lower()


def issue(key: bytes, conversation_id: str, agent_id: str) -> str:
    return f"{conversation_id}.{_signature(key, conversation_id, agent_id)}"


def verify(key: bytes, token: str, agent_id: str) -> str | None:
    """The conversation id when `token` was issued to `agent_id`; None otherwise."""
    conversation_id = conversation_of(token)
    if conversation_id is None:
        return None
    expected = issue(key, conversation_id, agent_id)
    return conversation_id if hmac.compare_digest(expected, token) else None
