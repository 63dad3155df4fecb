"""The one conversation-token parser: what names a conversation and what does not."""

from __future__ import annotations

import pytest

from router.connector.tokens import ISSUED, MAX_CHARS, conversation_of, split
from router.routing import tokens

KEY = b"k" * 32
CONV = "0123456789abcdef0123456789abcdef"


def test_an_issued_token_names_its_conversation_and_has_the_issued_shape() -> None:
    token = tokens.issue(KEY, CONV, "ana")
    assert conversation_of(token) == CONV
    assert split(token) == (CONV, token.partition(".")[2])
    assert ISSUED.fullmatch(token)


@pytest.mark.parametrize(
    ("token", "conversation"),
    [
        ("conv-42.abcdefghijklmnopqrstuvwx", "conv-42"),
        ("abc.def.1", "abc"),  # the signature is everything after the first dot
        ("abc", None),
        (".sig", None),
        ("abc.", None),
        ("", None),
        (None, None),
        ("a." + "b" * MAX_CHARS, None),  # longer than any token: no thread key from it
    ],
)
def test_conversation_of(token: str | None, conversation: str | None) -> None:
    assert conversation_of(token) == conversation


def test_the_router_reads_tokens_with_the_shared_parser() -> None:
    assert tokens.conversation_of is conversation_of
    assert tokens.verify(KEY, "a." + "b" * MAX_CHARS, "ana") is None
