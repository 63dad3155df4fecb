"""A bench script runs with bench/ first on the import path (`python bench/x.py`): one
named like a module it or its imports need (`email.py`, `telegram.py`) hides that module
and the script fails to import."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_no_bench_script_hides_a_module() -> None:
    hiding = [
        p.name
        for p in sorted(BENCH.glob("*.py"))
        if p.stem in sys.stdlib_module_names or importlib.util.find_spec(p.stem) is not None
    ]
    assert hiding == []
