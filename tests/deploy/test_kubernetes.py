"""deploy/kubernetes/: valid for the Kubernetes API, runs the channels, hardened."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.config import load_config
from tests.deploy.tools import DEPLOY, ROOT, run, tool

MANIFEST = DEPLOY / "kubernetes" / "omnirouter.yaml"
SECRET = DEPLOY / "kubernetes" / "secret.example.yaml"
SECRETS_DIR = "/run/secrets/omnirouter/"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents(MANIFEST)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents(MANIFEST) if d["kind"] == "Deployment"}


def only_of(deployment: dict[str, Any]) -> set[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    return set(args[args.index("--only") + 1].split(","))


def validate(*paths: Path) -> None:
    exe = tool("kubernetes-validate", "the `test` extra: pip install -e '.[test]'")
    result = run(exe, "--strict", "--quiet", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_and_the_secret_example_are_valid_kubernetes() -> None:
    validate(MANIFEST, SECRET)


def test_the_validator_refuses_a_wrong_field(tmp_path: Path) -> None:
    # Proves the check above checks: a misspelt field is refused under --strict.
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFS", 1))
    with pytest.raises(AssertionError, match="readOnlyRootFS"):
        validate(bad)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The ConfigMap's channels.yaml, with the example Secret's keys as its secret files."""
    secret = yaml.safe_load(SECRET.read_text())
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value)
    text = one("ConfigMap")["data"]["channels.yaml"]
    assert SECRETS_DIR in text
    path = tmp_path / "channels.yaml"
    path.write_text(text.replace(SECRETS_DIR, f"{tmp_path}/"))
    return path


def test_the_configmap_is_a_valid_config_whose_secrets_the_example_secret_names(
    config_file: Path,
) -> None:
    config = load_config(config_file)
    assert config.bus.backend == "kafka"
    assert config.store.url.startswith("postgresql://")
    assert config.http.host == "0.0.0.0"


def test_the_connectors_deployment_runs_every_enabled_channel_in_one_replica(
    config_file: Path,
) -> None:
    enabled = {c.name for c in load_config(config_file).channels if c.enabled}
    assert enabled
    found = deployments()
    assert only_of(found["omnirouter-connectors"]) == enabled
    assert found["omnirouter-connectors"]["spec"]["replicas"] == 1
    # Never two pods polling one mailbox or bot, even during a rollout.
    assert found["omnirouter-connectors"]["spec"]["strategy"] == {"type": "Recreate"}
    assert only_of(found["omnirouter-router"]) == {"router"}
    assert found["omnirouter-router"]["spec"]["replicas"] >= 2


def test_the_attachments_volume_is_where_the_config_puts_the_blob_store(
    config_file: Path,
) -> None:
    blobs = str(load_config(config_file).blobs.path)
    pod = deployments()["omnirouter-connectors"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == blobs)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@pytest.mark.parametrize("name", ["omnirouter-router", "omnirouter-connectors"])
def test_pods_are_hardened_probed_and_pinned(name: str) -> None:
    pod = deployments()[name]["spec"]["template"]["spec"]
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] > 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    image, _, tag = container["image"].rpartition(":")
    assert image and tag == project_version()  # never `latest`: a rollout must be chosen
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "omnirouter-secrets"
    assert volumes["config"]["configMap"]["name"] == "omnirouter-config"


def test_a_disruption_budget_keeps_a_router_running() -> None:
    pdb = one("PodDisruptionBudget")
    router = deployments()["omnirouter-router"]
    assert pdb["spec"]["selector"]["matchLabels"] == router["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] == 1


def test_no_secret_is_committed_in_the_manifest() -> None:
    assert all(d["kind"] != "Secret" for d in documents(MANIFEST))
    assert [d["kind"] for d in documents(SECRET)] == ["Secret"]
