"""The daemon as operators run it: `omnirouter run` in its own process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.daemon import ROOT, DaemonProcess, embedded_config, get, wait_for

SHIPPED = ROOT / "config" / "channels.yaml"


@pytest.fixture
def daemon(tmp_path: Path):
    started: list[DaemonProcess] = []

    def start(
        config: Path = SHIPPED, *extra: str, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path, *extra, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def test_shipped_config_runs_and_stops_cleanly(daemon, tmp_path: Path) -> None:
    d = daemon()
    took = wait_for(d.base + "/healthz", 200, 15)
    assert took < 15
    wait_for(d.base + "/readyz", 200, 15)
    status, body = get(d.base + "/metrics")
    assert status == 200
    assert b"omnirouter_messages_in_total" in body
    # The shipped config keeps its state under var/ relative to where it runs.
    assert (tmp_path / "var").is_dir()
    code, took = d.stop(signal.SIGTERM)
    assert code == 0, d.output()
    assert took < 10
    assert '"daemon stopped"' in d.output()


def test_sigint_also_stops_cleanly(daemon) -> None:
    d = daemon()
    wait_for(d.base + "/readyz", 200, 15)
    code, _ = d.stop(signal.SIGINT)
    assert code == 0, d.output()


def test_sighup_with_invalid_file_keeps_running(daemon, tmp_path: Path) -> None:
    config = tmp_path / "channels.yaml"
    config.write_text(SHIPPED.read_text())
    d = daemon(config)
    wait_for(d.base + "/readyz", 200, 15)

    config.write_text(SHIPPED.read_text() + "\nno_such_section: true\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reload rejected" not in d.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "config reload rejected" in d.output()
    assert "no_such_section" in d.output()
    assert get(d.base + "/readyz")[0] == 200

    config.write_text(SHIPPED.read_text())
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while '"config reloaded"' not in d.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert '"config reloaded"' in d.output()
    code, _ = d.stop()
    assert code == 0, d.output()


def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbus:\n  backend: carrier-pigeon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "router.cli", "run", "-c", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "bus.backend" in proc.stderr
    assert f"{bad}:3" in proc.stderr


def test_only_with_an_unknown_part_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "router.cli", "run", "-c", str(SHIPPED), "--only", "routr"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "--only: unknown part 'routr'; known: agent-hooks, main-line, router," in proc.stderr


def rewrite_in_place(path: Path, text: str) -> None:
    """New content of the same size and mtime: only SIGHUP notices it (the file watcher
    compares size and mtime, and would reload it a second time)."""
    st = path.stat()
    data = text.encode()
    assert len(data) == st.st_size
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def reloads(d: DaemonProcess, result: str) -> float:
    _, body = get(d.base + "/metrics")
    line = f'omnirouter_config_reloads_total{{result="{result}"}} '
    found = [row for row in body.decode().splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def test_sighup_with_a_nul_or_an_esc_keeps_running_on_the_old_config(
    daemon, tmp_path: Path
) -> None:
    good = SHIPPED.read_text()
    config = tmp_path / "channels.yaml"
    config.write_text(good)
    d = daemon(config)
    wait_for(d.base + "/readyz", 200, 15)
    where = good.index("\n# ") + 2  # a space in a comment: the reader refuses it anyway
    line = good.count("\n", 0, where) + 1
    for n, (char, named) in enumerate([("\x00", "U+0000 (NUL)"), ("\x1b", "U+001B (ESC)")], 1):
        rewrite_in_place(config, good[:where] + char + good[where + 1 :])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log(f"{config}:{line}: control character {named} is not allowed")
        assert reloads(d, "invalid") >= n
        assert get(d.base + "/readyz")[0] == 200
    rewrite_in_place(config, good)  # a later valid edit is taken
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log('"config reloaded"')
    assert reloads(d, "ok") >= 1
    code, _ = d.stop()
    assert code == 0, d.output()
    assert "never retrieved" not in d.output()


def test_a_start_up_failure_exits_1_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "channels.yaml"
    config.write_text(
        embedded_config(tmp_path).replace(
            f"{tmp_path}/store.sqlite3", f"{tmp_path}/a-file/store.sqlite3"
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "router.cli", "run", "-c", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"event":"daemon failed to start"' in proc.stdout
    assert "cannot create the directory" in proc.stdout
    assert '"event":"daemon stopped after a failure"' in proc.stdout
    assert proc.stderr == ""
