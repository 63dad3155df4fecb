"""Identity tokens as JWT (HS256 only): a valid one names the shop customer; an expired,
forged, `alg: none` or other-alg one is refused with the reason, and over a socket links
nothing."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from connectors.webchat.errors import BadToken
from connectors.webchat.tokens import ShopCustomer, verify_identity
from tests.connectors.webchat.helpers import chat

KEY = b"shop-identity-secret-" + b"0123456789" * 5  # long enough for HS512 too (RFC 7518)
NOW = 1_800_000_000


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "cust-7", "email": "ana@example.com", "exp": NOW + 60, **extra}


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """A token with any header, as an attacker writes it (no library would sign `none`)."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


def test_a_valid_jwt_names_the_customer() -> None:
    token = jwt.encode(claims(), KEY, algorithm="HS256")
    assert verify_identity(KEY, token, NOW) == ShopCustomer("cust-7", "ana@example.com")
    no_email = jwt.encode(claims(email=None), KEY, algorithm="HS256")
    assert verify_identity(KEY, no_email, NOW) == ShopCustomer("cust-7", None)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode(claims(exp=NOW - 1), KEY, algorithm="HS256"), "identity token expired"),
        (
            jwt.encode(claims(), b"a-forger-who-guessed-wrong-" + b"0" * 40, algorithm="HS256"),
            "identity token signature does not match",
        ),
        (unsigned(claims()), "identity token alg must be HS256"),
        (unsigned(claims(), alg="None"), "identity token alg must be HS256"),
        (jwt.encode(claims(), KEY, algorithm="HS512"), "identity token alg must be HS256"),
        (unsigned(claims(), alg="RS256"), "identity token alg must be HS256"),
        (
            jwt.encode({"sub": "cust-7"}, KEY, algorithm="HS256"),
            "identity token needs sub and exp",
        ),
        (jwt.encode(claims(sub=""), KEY, algorithm="HS256"), "identity token needs id and exp"),
        ("a.b.c", "malformed token"),
        ("x" * 3000 + ".a.b", "malformed token"),
    ],
    ids=[
        "expired",
        "forged",
        "alg-none",
        "alg-None",
        "hs512",
        "rs256",
        "no-exp",
        "empty-sub",
        "garbage",
        "huge",
    ],
)
def test_a_bad_jwt_is_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(BadToken) as refused:
        verify_identity(KEY, token, NOW)
    assert str(refused.value) == reason


@pytest.mark.parametrize("kind", ["forged", "expired", "alg-none"])
async def test_a_refused_jwt_closes_the_socket_and_links_nothing(tmp_path: Path, kind: str) -> None:
    now = int(time.time())
    token = {
        "forged": jwt.encode(
            {"sub": "cust-7", "email": "ana@example.com", "exp": now + 60},
            b"a-forger-who-guessed-wrong-" + b"0" * 40,
            algorithm="HS256",
        ),
        "expired": jwt.encode(
            {"sub": "cust-7", "email": "ana@example.com", "exp": now - 60}, KEY, algorithm="HS256"
        ),
        "alg-none": unsigned({"sub": "cust-7", "email": "ana@example.com", "exp": now + 60}),
    }[kind]
    async with chat(tmp_path, identity_secret=KEY.decode()) as c:
        intruder = await c.hello(identity=token)
        code, _ = await intruder.closed()
        assert code == 4401
        assert [f["t"] for f in intruder.frames] == ["error"]  # no session, nothing kept
        assert c.runner.taken == []


async def test_a_valid_jwt_over_the_socket_makes_the_shop_customer_the_sender(
    tmp_path: Path,
) -> None:
    token = jwt.encode(
        {"sub": "cust-7", "email": "ana@example.com", "exp": int(time.time()) + 60},
        KEY,
        algorithm="HS256",
    )
    async with chat(tmp_path, identity_secret=KEY.decode()) as c:
        client = await c.hello(identity=token)
        await client.next("welcome")
        assert (await client.say("c1", "hi"))["state"] == "sent"
        [env] = c.runner.taken
        assert env.sender.address == "shop:cust-7"
        assert [(i.kind, i.value) for i in env.identities] == [("email", "ana@example.com")]
