"""The widget's look from the `webchat:` block: colours that must be readable, and only
the words the widget has may be reworded."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.webchat.config import contrast
from tests.connectors.webchat.helpers import chat_config


def test_the_colours_and_texts_reach_the_widget() -> None:
    cfg = chat_config(
        color="#7a1f5c",
        form=["email"],
        texts={"es": {"closed": "Abrimos {opens}."}},
    )
    look = cfg.widget()
    assert (look["color"], look["text_color"], look["form"]) == ("#7a1f5c", "#ffffff", ["email"])
    assert look["texts"] == {"es": {"closed": "Abrimos {opens}."}}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"color": "#ffff00"}, "contrasts 1.1:1; at least 4.5:1"),
        ({"color": "blue"}, "String should match pattern"),
        ({"texts": {"en": {"titel": "x"}}}, "texts.en: unknown titel"),
        ({"form": ["age"]}, "Input should be 'name', 'email', 'phone' or 'topic'"),
    ],
)
def test_an_unreadable_or_unknown_look_is_refused(extra: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        chat_config(**extra)


def test_contrast_is_wcag_s() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#0b5394", "#ffffff") > 7  # the default: AAA
