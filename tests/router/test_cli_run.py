"""`omnirouter run` as a newcomer first meets it: its own process, the shipped config."""

import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.harness.daemon import ROOT, DaemonProcess, wait_for

SHIPPED = ROOT / "config" / "channels.yaml"


def omnirouter(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def daemon(tmp_path: Path):
    started: list[DaemonProcess] = []

    def start(*extra: str) -> DaemonProcess:
        d = DaemonProcess(SHIPPED, tmp_path, *extra, env={"PYTHONWARNINGS": "default"})
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def test_http_flag_overrides_the_configs_address(daemon) -> None:
    d = daemon()  # --http 127.0.0.1:<free port>; the shipped config says 8080
    assert "8080" not in d.base
    wait_for(d.base + "/healthz", 200, 30)
    assert f'"port":{d.port}' in d.output()


def test_http_flag_is_documented(tmp_path: Path) -> None:
    result = omnirouter("run", "--help", cwd=tmp_path)
    assert "--http HOST:PORT" in result.stdout


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_taken_port_is_one_line_naming_the_address(tmp_path: Path, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as taken:
        try:
            taken.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} on this machine")
        taken.listen()
        port = taken.getsockname()[1]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        result = omnirouter("run", "-c", str(SHIPPED), "--http", f"{address}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"omnirouter: cannot listen on {address}: address already in use; pick another"
        " with --http HOST:PORT or http.host and http.port in the config"
    ]
    assert "Traceback" not in result.stdout + result.stderr


# The one warning the shipped config gives, and why it stays: every shipped channel needs
# a secret (a password, a bot token, a signing key) that cannot ship, so all start
# disabled, and a daemon with no channel takes nothing in; the operator should hear it.
NO_CHANNEL = "no channel enabled: nothing comes in and no agent is reached"


def test_the_shipped_config_starts_without_warnings(daemon) -> None:
    """What a fresh clone's `make run` prints once installed: log lines only (Python's
    own warnings shown, as `python -W default` would), none of them a warning but the
    one above, and it stops cleanly on Ctrl-C."""
    d = daemon()
    wait_for(d.base + "/healthz", 200, 30)
    d.wait_for_log('"daemon ready"')
    code, _ = d.stop(signal.SIGINT)
    assert code == 0, d.output()
    lines = d.output().splitlines()
    assert lines
    events = [orjson.loads(line) for line in lines]  # a Python warning is not JSON
    assert [e["event"] for e in events if e["level"] != "info"] == [NO_CHANNEL]
    channels = next(e for e in events if e["event"] == NO_CHANNEL)
    assert channels["disabled"] == [
        "support-email",
        "shop-telegram",
        "site-chat",
        "main-line",
        "agent-hooks",
    ]
