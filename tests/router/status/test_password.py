"""The supervisor's credential at rest: a scrypt hash string, checked in bounded time, and
the `supervisor:` block that holds it (from the environment or a file, never inline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.config import parse_config
from router.errors import ConfigError
from router.status.password import make, parse
from tests.harness.daemon import ROOT

CHEAP = {"n": 2**10, "r": 8, "p": 1}  # the lowest cost parse accepts: fast tests


def test_a_hash_matches_its_password_only() -> None:
    text = make("a long enough password", **CHEAP)
    assert text.startswith("$scrypt$n=1024,r=8,p=1$")
    assert "a long enough password" not in text
    hashed = parse(text)
    assert hashed.matches("a long enough password")
    assert not hashed.matches("a long enough passworD")
    assert not hashed.matches("")
    assert make("a long enough password", **CHEAP) != text  # a new salt every time


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hunter2", "expected $scrypt$"),
        ("$pbkdf2$x$y", "expected $scrypt$"),
        ("$scrypt$n=3000,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "a" * 43, "not a power of two"),
        ("$scrypt$n=512,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "a" * 43, "outside"),
        # Each bound allowed, together a check of seconds: refused.
        ("$scrypt$n=131072,r=16,p=4$c2FsdHNhbHRzYWx0c2FsdA$" + "a" * 43, "over"),
    ],
)
def test_a_hash_that_is_not_one_or_costs_too_much_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("$", r"\$")):
        parse(text)


def test_the_module_makes_a_hash_from_stdin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router.status.password"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert parse(done.stdout.strip()).matches("a long enough password")
    short = subprocess.run(
        [sys.executable, "-m", "router.status.password"],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr


def test_the_supervisor_block_takes_a_hash_from_the_environment_or_a_file(
    tmp_path: Path,
) -> None:
    text = make("a long enough password", **CHEAP)
    config = parse_config("version: 1\nsupervisor: {password_hash: '${H}'}\n", env={"H": text})
    assert config.supervisor.password_hash is not None
    assert config.supervisor.password_hash.get_secret_value() == text
    path = tmp_path / "hash"
    path.write_text(text + "\n")
    config = parse_config(f"version: 1\nsupervisor: {{password_hash_file: {path}}}\n")
    assert config.supervisor.password_hash is not None
    assert parse(config.supervisor.password_hash.get_secret_value()).matches(
        "a long enough password"
    )
    assert parse_config("version: 1\n").supervisor.password_hash is None  # the page is off


@pytest.mark.parametrize(
    ("block", "env", "why"),
    [
        ("{password_hash: '$scrypt$x'}", {}, "secrets must not be written in the file"),
        ("{password_hash: '${H}'}", {"H": "the password itself"}, "expected $scrypt$"),
        ("{password_hash: '${H}'}", {}, "environment variable H is not set"),
        ("{timezone: Mars/Olympus}", {}, "unknown time zone"),
        ("{refresh_seconds: 1}", {}, "greater than or equal to 5"),
    ],
)
def test_a_bad_supervisor_block_is_refused_with_the_reason(
    block: str, env: dict[str, str], why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"version: 1\nsupervisor: {block}\n", env=env)
    assert why in str(caught.value.problems)
