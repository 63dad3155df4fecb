from hypothesis import given
from hypothesis import strategies as st

from router.routing.tokens import issue, verify

KEY = b"k" * 32
ids = st.text("abcdef0123456789", min_size=1, max_size=32)


@given(ids, st.sampled_from(["ana", "ben"]))
def test_issued_token_verifies_for_its_agent_only(conversation: str, agent: str) -> None:
    token = issue(KEY, conversation, agent)
    assert verify(KEY, token, agent) == conversation
    other = "ben" if agent == "ana" else "ana"
    assert verify(KEY, token, other) is None
    assert verify(b"x" * 32, token, agent) is None


def test_tampered_tokens_fail() -> None:
    token = issue(KEY, "c1", "ana")
    _, _, sig = token.partition(".")
    assert verify(KEY, f"c2.{sig}", "ana") is None
    flipped = sig[:-1] + ("b" if sig[-1] != "b" else "c")
    assert verify(KEY, f"c1.{flipped}", "ana") is None
    assert verify(KEY, "garbage", "ana") is None
    assert verify(KEY, "", "ana") is None
