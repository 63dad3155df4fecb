"""deploy/*.service: units systemd accepts, sandboxed until `systemd-analyze security`
rates them OK or better, reloading by SIGHUP."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, run, tool

MAIN = DEPLOY / "omnirouter.service"
TEMPLATE = DEPLOY / "omnirouter-channel@.service"
INSTALLED = "/usr/local/bin/omnirouter"
# systemd's scale: 0-10, "OK" up to 4.9 (then MEDIUM, EXPOSED, UNSAFE).
MOST_EXPOSURE = 4.9


def systemd_analyze() -> str:
    return tool("systemd-analyze", "Debian's systemd package (.ci/system-deps)")


def installed_copy(unit: Path, into: Path, name: str | None = None) -> Path:
    """The unit with ExecStart on this venv's omnirouter: `verify` checks the binary exists."""
    omnirouter = Path(sys.executable).parent / "omnirouter"
    if not omnirouter.exists():
        pytest.fail(f"{omnirouter} missing: install the project (pip install -e .)")
    text = unit.read_text()
    assert INSTALLED in text
    copy = into / (name or unit.name)
    copy.write_text(text.replace(INSTALLED, str(omnirouter)))
    return copy


def verify(*units: Path) -> None:
    result = run(systemd_analyze(), "verify", "--man=no", *units)
    # verify warns (an unknown key, a bad value) and still exits 0: any output fails.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_systemd_accepts_both_units(tmp_path: Path) -> None:
    verify(
        installed_copy(MAIN, tmp_path),
        installed_copy(TEMPLATE, tmp_path),
        installed_copy(TEMPLATE, tmp_path, "omnirouter-channel@support-email.service"),
    )


def test_verify_reports_a_misspelt_setting(tmp_path: Path) -> None:
    unit = installed_copy(MAIN, tmp_path)
    unit.write_text(unit.read_text().replace("ProtectHome=", "ProtectHom=", 1))
    with pytest.raises(AssertionError, match="ProtectHom"):
        verify(unit)


@pytest.mark.parametrize("unit", [MAIN, TEMPLATE], ids=lambda u: u.name)
def test_the_sandbox_rates_ok_or_better(unit: Path) -> None:
    result = run(systemd_analyze(), "security", "--offline=yes", "--no-pager", unit)
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", result.stdout)
    assert found, result.stdout[-500:]
    assert float(found[1]) <= MOST_EXPOSURE, result.stdout
    assert found[2] in ("SAFE", "OK"), found[0]


def settings(unit: Path) -> list[str]:
    return [line for line in unit.read_text().splitlines() if line and not line.startswith("#")]


def hardening(unit: Path) -> list[str]:
    lines = unit.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Hardening"))
    end = lines.index("[Install]")
    return [line for line in lines[start:end] if line and not line.startswith("#")]


def test_the_template_has_the_same_sandbox_as_the_main_unit() -> None:
    assert hardening(MAIN)
    assert hardening(TEMPLATE) == hardening(MAIN)


@pytest.mark.parametrize("unit", [MAIN, TEMPLATE], ids=lambda u: u.name)
def test_a_dynamic_user_with_its_state_directory_and_reload_by_sighup(unit: Path) -> None:
    lines = settings(unit)
    assert "DynamicUser=yes" in lines
    assert "StateDirectory=omnirouter" in lines
    assert "WorkingDirectory=%S/omnirouter" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines


def test_the_template_runs_only_its_channel() -> None:
    (exec_start,) = [s for s in settings(TEMPLATE) if s.startswith("ExecStart=")]
    assert "--only %i" in exec_start
