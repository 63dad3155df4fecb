"""Running the deploy files' validators: found in this venv or on PATH; in CI a missing
one fails the test (CI must not go green by checking less), elsewhere it skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.common import in_ci

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# A validator that hangs is a failure, not a stuck suite.
TIMEOUT = 60


def tool(name: str, how: str) -> str:
    """The path of `name`; `how` says where it comes from, for the skip or failure."""
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which(name, path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    if found is None:
        message = f"{name} is not installed ({how})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
