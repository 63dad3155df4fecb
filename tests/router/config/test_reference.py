from router.config.reference import DEFAULT_OUTPUT, generate
from tests.router.config.support import REPO, all_models


def test_committed_reference_is_up_to_date():
    committed = (REPO / DEFAULT_OUTPUT).read_text(encoding="utf-8")
    assert committed == generate(), (
        "docs/configuration.md is out of date: run python -m router.config.reference"
    )


def test_every_field_has_a_description():
    seen = all_models()
    assert len(seen) > 20
    undescribed = [
        f"{model.__name__}.{name}"
        for model in seen
        if model.__name__ != "TimeRange"
        for name, info in model.model_fields.items()
        if not info.description
    ]
    assert not undescribed


def test_reference_marks_secrets():
    text = generate()
    assert "| `password` | secret string or null | `null` | yes |" in text
    assert "| `bot_token` | secret string or null | `null` | yes |" in text
    assert "### `channels[].email` (channels of type `email`)" in text
