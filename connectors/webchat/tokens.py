"""Session tokens (ours) and identity tokens (the shop's), both HMAC-SHA256.

A session token is `<payload>.<sig>`, payload base64url JSON `{"v": visitor, "iat": t}`:
it names the session and is reissued on every `hello`, so an active visitor's token
never expires. It verifies under the current key or the previous one (rotation).
An identity token is signed by the shop's backend with hex HMAC over the payload
`{"id", "email", "exp"}`, or is a JWT (HS256 only, `sub`, `email`, `exp` required),
read by PyJWT. Reasons are our own fixed texts: safe to log and to send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import warnings
from dataclasses import dataclass

import jwt
import orjson
from jwt.warnings import InsecureKeyLengthWarning

from connectors.webchat.errors import BadToken

MAX_TOKEN = 2048
VISITOR = re.compile(r"^v_[A-Za-z0-9_-]{22}$")


def new_visitor() -> str:
    return "v_" + secrets.token_urlsafe(16)  # 16 bytes: 22 characters


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def issue_session(key: bytes, visitor: str, now: float) -> str:
    payload = _b64(orjson.dumps({"v": visitor, "iat": int(now)}))
    return f"{payload}.{_b64(_mac(key, payload))}"


def _payload(token: object) -> tuple[str, str, dict[str, object]]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise BadToken("malformed token")
    payload, sig = token.split(".")
    try:
        data = orjson.loads(_unb64(payload))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise BadToken("malformed token") from None
    if not isinstance(data, dict):
        raise BadToken("malformed token")
    return payload, sig, data


def verify_session(keys: list[bytes], token: object, now: float, ttl: float) -> str:
    """The visitor a session token names, if signed by one of `keys` and not expired."""
    payload, sig, data = _payload(token)
    try:
        given = _unb64(sig)
    except (ValueError, binascii.Error):
        raise BadToken("session token signature does not match") from None
    if not any(hmac.compare_digest(_mac(k, payload), given) for k in keys):
        raise BadToken("session token signature does not match")
    visitor, iat = data.get("v"), data.get("iat")
    if not isinstance(visitor, str) or not VISITOR.match(visitor) or not isinstance(iat, int):
        raise BadToken("malformed token")
    if now > iat + ttl:
        raise BadToken("session expired")
    return visitor


@dataclass(frozen=True, slots=True)
class ShopCustomer:
    id: str
    email: str | None


def sign_identity(key: bytes, customer_id: str, email: str | None, exp: int) -> str:
    """What a shop's backend does (here for tests and docs/webchat.md's example)."""
    payload = _b64(orjson.dumps({"id": customer_id, "email": email, "exp": exp}))
    return f"{payload}.{_mac(key, payload).hex()}"


def verify_identity(key: bytes | None, token: object, now: float) -> ShopCustomer:
    if key is None:
        raise BadToken("this chat takes no identity tokens")
    if isinstance(token, str) and token.count(".") == 2:
        return _verify_jwt(key, token, now)
    payload, sig, data = _payload(token)
    if not hmac.compare_digest(_mac(key, payload).hex().encode(), sig.encode("utf-8", "replace")):
        raise BadToken("identity token signature does not match")
    return _customer(data.get("id"), data.get("email"), data.get("exp"), now)


def _customer(cid: object, email: object, exp: object, now: float) -> ShopCustomer:
    if not isinstance(cid, str) or not 0 < len(cid) <= 128 or not isinstance(exp, int):
        raise BadToken("identity token needs id and exp")
    if email is not None and (not isinstance(email, str) or len(email) > 320):
        raise BadToken("identity token email is not a string")
    if now > exp:
        raise BadToken("identity token expired")
    return ShopCustomer(cid, email)


def _verify_jwt(key: bytes, token: str, now: float) -> ShopCustomer:
    """A JWT identity token: HS256 and nothing else (never `none`, never a public-key
    alg a shared secret could be confused with); `sub` the customer id, `exp` required."""
    if len(token) > MAX_TOKEN:
        raise BadToken("malformed token")
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise BadToken("malformed token") from None
    if alg != "HS256":
        raise BadToken("identity token alg must be HS256")
    try:
        # The config sets the key's strength (identity_secret, at least 16 characters;
        # docs/webchat.md advises 32 for JWT): no warning from every visitor's hello.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            # The expiry is checked below against `now`, like the HMAC format's.
            data = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"], "verify_exp": False},
            )
    except jwt.InvalidSignatureError:
        raise BadToken("identity token signature does not match") from None
    except jwt.MissingRequiredClaimError:
        raise BadToken("identity token needs sub and exp") from None
    except jwt.PyJWTError:
        raise BadToken("malformed token") from None
    exp = data.get("exp")
    exp = int(exp) if isinstance(exp, float) else exp  # a NumericDate may have a fraction
    return _customer(data.get("sub"), data.get("email"), exp, now)
