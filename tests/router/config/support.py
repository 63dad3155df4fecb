"""Helpers for the config tests."""

import textwrap
from pathlib import Path
from typing import Any

import pytest

from router.config import Config, ConfigError, ConfigProblem, parse_config

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
