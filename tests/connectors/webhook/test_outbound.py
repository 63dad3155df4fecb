"""What a delivery is signed with (the body and headers over real HTTP: test_client.py)."""

from __future__ import annotations

import hashlib
import hmac

from connectors.webhook.outbound import signature

KEY = b"0123456789abcdef-key"
BODY = b'{"id":"e1","agent":"ana","type":"reply","text":"hi","token":"c.x"}'
NOW = 1_760_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(KEY, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(KEY, NOW, BODY) == f"v1={expected}"
