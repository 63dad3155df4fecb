"""Helpers for the config tests."""

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from router.config import Config, ConfigError, ConfigProblem, parse_config
from router.connector import load_registry

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "config" / "channels.yaml"


def parse(text: str, env: dict[str, str] | None = None, **kw: Any) -> Config:
    return parse_config(textwrap.dedent(text), file="test.yaml", env=env or {}, **kw)


def problems(text: str, env: dict[str, str] | None = None, **kw: Any) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse(text, env, **kw)
    return info.value.problems


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of (dedented) `text` containing `needle`."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def find(found: list[ConfigProblem], path: str) -> ConfigProblem:
    matches = [p for p in found if p.path == path]
    assert matches, f"no problem at {path}; got:\n" + "\n".join(map(str, found))
    return matches[0]


def all_models() -> set[type[BaseModel]]:
    """Every config model: the file's and each installed connector's block, and theirs."""
    seen: set[type[BaseModel]] = set()
    for root in [Config, *(spec.config for spec in load_registry().values())]:
        _models(root, seen)
    return seen


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        for arg in _types(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _types(tp: Any) -> Iterator[Any]:
    yield tp
    for arg in getattr(tp, "__args__", ()):
        yield from _types(arg)
    origin = getattr(tp, "__origin__", None)
    if origin is not None:
        yield from _types(origin)
