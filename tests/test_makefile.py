"""`make run` as a newcomer types it: what it installs and how it starts the daemon.

`make -n` prints the commands without running them; a throwaway VENV directory
makes every install step due, as in a fresh clone.
"""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(tmp_path: Path, *args: str) -> list[str]:
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return [line for line in result.stdout.splitlines() if not line.startswith("make")]


def pip_installs(commands: list[str]) -> list[str]:
    return [c for c in commands if "/pip " in c and " install " in c and "--upgrade pip" not in c]


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    commands = dry_run(tmp_path, "run")
    [install] = pip_installs(commands)
    assert install.endswith(" -e '.[postgres]'")  # the driver, not the [test] or [dev] extras
    assert "--quiet" not in install  # the long step shows what it is collecting
    # Each step says what it is doing before it does it.
    said = [c for c in commands if c.startswith("echo ")]
    assert any("creating the virtual environment" in c for c in said)
    assert any("runtime dependencies" in c for c in said)
    assert commands.index(next(c for c in said if "runtime" in c)) < commands.index(install)


def test_make_test_installs_the_test_extras(tmp_path: Path) -> None:
    commands = dry_run(tmp_path, "lint")
    assert any(c.endswith("-e '.[dev]'") for c in pip_installs(commands))


def test_make_run_http_picks_the_listen_address(tmp_path: Path) -> None:
    [run] = [c for c in dry_run(tmp_path, "run", "HTTP=127.0.0.1:9000") if "omnirouter run" in c]
    assert run.endswith("omnirouter run -c config/channels.yaml --http '127.0.0.1:9000'")
    [run] = [c for c in dry_run(tmp_path, "run") if "omnirouter run" in c]
    assert "--http" not in run
