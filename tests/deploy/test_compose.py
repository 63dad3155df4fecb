"""deploy/compose.yaml: valid by the compose specification, waits for healthy services,
keeps attachments in a volume, and every secret it reads has an example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.config import load_config
from tests.deploy.tools import DEPLOY, ROOT, run, tool

COMPOSE = DEPLOY / "compose.yaml"
EXAMPLES = DEPLOY / "secrets.example"
WORKDIR = Path("/var/lib/omnirouter")  # the image's WORKDIR (deploy/Dockerfile)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def validate(path: Path) -> None:
    # check-jsonschema carries the compose-spec schema (vendor.compose-spec): no download.
    exe = tool("check-jsonschema", "the `test` extra: pip install -e '.[test]'")
    result = run(exe, "--builtin-schema", "vendor.compose-spec", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_follows_the_compose_specification() -> None:
    validate(COMPOSE)


def test_the_validator_refuses_an_unknown_condition(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("service_healthy", "service_ready", 1))
    with pytest.raises(AssertionError, match="service_ready"):
        validate(bad)


def test_every_service_has_a_healthcheck_and_omnirouter_waits_for_healthy_ones() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    depends = services["omnirouter"]["depends_on"]
    assert set(depends) == set(services) - {"omnirouter"}
    assert all(d["condition"] == "service_healthy" for d in depends.values())


def test_attachments_live_in_a_named_volume_where_the_shipped_config_puts_them() -> None:
    data = compose()
    blobs = load_config(ROOT / "config" / "channels.yaml").blobs.path
    where = str(blobs if blobs.is_absolute() else WORKDIR / blobs)
    volume = next(
        v.split(":")[0] for v in data["services"]["omnirouter"]["volumes"] if f":{where}" in v
    )
    assert volume in data["volumes"]


def test_kafka_keeps_its_log_in_its_named_volume() -> None:
    # apache/kafka writes to /tmp/kraft-combined-logs unless KAFKA_LOG_DIRS says otherwise:
    # the volume would stay empty and a new container would start with no topics.
    data = compose()
    kafka = data["services"]["kafka"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}  # path -> volume
    volume = mounts[kafka["environment"]["KAFKA_LOG_DIRS"]]
    assert volume in data["volumes"]


def test_every_secret_file_it_reads_has_an_example() -> None:
    data = compose()
    files = [Path(s["file"]) for s in data["secrets"].values()]
    files += [Path(e["path"]) for e in data["services"]["omnirouter"]["env_file"]]
    for file in files:
        assert file.parts[0] == "secrets", file  # deploy/secrets/: git-ignored
        assert (EXAMPLES / file.relative_to("secrets")).is_file(), file
    assert (ROOT / ".gitignore").read_text().count("deploy/secrets/\n") == 1


def test_the_example_env_file_sets_every_variable_the_shipped_config_requires() -> None:
    # `${NAME}` without a default: the config refuses to load once its channel is enabled.
    lines = (ROOT / "config" / "channels.yaml").read_text().splitlines()
    code = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in lines)  # not the comments
    required = set(re.findall(r"\$\{([A-Z0-9_]+)\}", code))
    example = (EXAMPLES / "omnirouter.env").read_text()
    given = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    environment = set(compose()["services"]["omnirouter"]["environment"])
    assert required <= given | environment, required - given - environment
