"""bench/instructions.py: the traffic each run routes, and the split of a callgrind
output file by library (a misread file must not print wrong shares)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Two objects as callgrind writes them: names compressed to numbers after their first
# use, a call's inclusive cost on the line after `calls=` (the callee's own lines count it
# again), positions relative to the line before.
OUTPUT = """\
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 900
ob=(1) /root/.pyenv/versions/3.11.7/bin/python3.11
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 500
cob=(2) /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6
cfi=(2) sqlite3.c
cfn=(2) sqlite3_step
calls=1 20
12 300
+2 100
ob=(2)
fl=(2)
fn=(2)
20 280
* 20
totals: 900
"""


@pytest.fixture
def instructions(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(BENCH))  # as `python bench/instructions.py` runs
    spec = importlib.util.spec_from_file_location("bench_instructions", BENCH / "instructions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    yield module
    # The bench scripts it imported (`routing`) leave with bench/ on the path: a later
    # test must not find them as modules (tests/test_bench_names.py).
    for name in set(sys.modules) - before:
        where = getattr(sys.modules[name], "__file__", None)
        if where is not None and Path(where).parent == BENCH:
            del sys.modules[name]


def test_each_functions_own_instructions_are_summed_by_library(
    instructions: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text(OUTPUT)
    assert instructions.by_library(out, 900) == {
        "Python interpreter": 600,
        "SQLite and sqlite3": 300,
    }


def test_a_split_that_does_not_add_up_to_the_total_stops(
    instructions: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text(OUTPUT)
    with pytest.raises(SystemExit, match="900 instructions by library, 1,200 in all"):
        instructions.by_library(out, 1200)


def test_follow_ups_go_to_conversations_both_runs_open_first(instructions: ModuleType) -> None:
    fewer = instructions.messages("follow-ups", 3, 4)
    more = instructions.messages("follow-ups", 6, 4)
    opened = {m.thread_key for m in more[:4]}
    assert len(opened) == 4 and len(more) == 10
    assert {m.thread_key for m in more[4:]} <= opened
    # The longer run routes the shorter one's messages first: their difference is the
    # three follow-ups counted.
    assert [m.id for m in fewer] == [m.id for m in more[:7]]


def test_new_traffic_opens_a_conversation_with_each_message(instructions: ModuleType) -> None:
    new = instructions.messages("new", 5, 0)
    assert len({m.thread_key for m in new}) == 5
    assert [m.id for m in instructions.messages("new", 3, 0)] == [m.id for m in new[:3]]
