from typing import Any

from pydantic import BaseModel

from router.config import Config
from router.config.reference import DEFAULT_OUTPUT, generate
from router.connector import load_registry
from tests.router.config.support import REPO


def test_committed_reference_is_up_to_date():
    committed = (REPO / DEFAULT_OUTPUT).read_text(encoding="utf-8")
    assert committed == generate(), (
        "docs/configuration.md is out of date: run python -m router.config.reference"
    )


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        for arg in _types(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _types(tp: Any):
    yield tp
    for arg in getattr(tp, "__args__", ()):
        yield from _types(arg)
    origin = getattr(tp, "__origin__", None)
    if origin is not None:
        yield from _types(origin)


def test_every_field_has_a_description():
    seen: set[type[BaseModel]] = set()
    _models(Config, seen)
    for spec in load_registry().values():
        _models(spec.config, seen)
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
