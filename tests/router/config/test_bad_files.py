"""Files that are not YAML text, or YAML the loader must not follow: each is one located
problem (a `ConfigError`), never another exception, and `omnirouter check` exits 2."""

import io
import os
from pathlib import Path

import pytest

from router.cli import main
from router.config import ConfigError, check, load_config
from router.config.loader import MAX_CONFIG_BYTES
from router.config.source import MAX_DEPTH
from tests.router.config.support import SHIPPED, problems

HEAD = "version: 1\nhttp:\n"


@pytest.mark.parametrize(
    ("char", "named"),
    [
        ("\x00", "control character U+0000 (NUL)"),
        ("\x1b", "control character U+001B (ESC)"),  # pasted from a coloured terminal
        ("\x7f", "control character U+007F (DEL)"),
        ("\ufffe", "character U+FFFE"),
    ],
)
def test_a_character_yaml_refuses_is_named_with_its_line_and_column(char, named):
    (problem,) = problems(HEAD + f"  host: {char}[31mlocalhost\n")
    assert problem.line == 3
    assert problem.message == f"{named} is not allowed in YAML text (column 9)"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version: 1\nhttp: !!python/object:os.system x\n", 2, "could not determine a constructor"),
        ("version: 1\nhttp:\n  port: !!int eighty\n", 3, "not a valid !!int value"),
        ("version: 1\nhttp:\n  port: !!bool maybe\n", 3, "not a valid !!bool value"),
        ("version: 1\nx: !!timestamp 2024-13-01\n", 2, "not a valid !!timestamp value"),
        ("version: 1\nx: " + "[" * 10_000 + "]" * 10_000 + "\n", 2, f"deeper than {MAX_DEPTH}"),
    ],
)
def test_values_the_yaml_library_cannot_build_are_located_problems(text, line, message):
    (problem,) = problems(text)
    assert problem.line == line
    assert message in problem.message
    assert "eighty" not in problem.message and "maybe" not in problem.message


def test_aliases_cannot_expand_the_file_without_bound():
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):  # 10**9 values once expanded
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    (problem,) = problems("\n".join(lines) + "\n")
    assert "values once aliases are expanded" in problem.message


def test_an_unpaired_surrogate_escape_is_refused_and_printable():
    found = problems('version: 1\nskills:\n  - name: "x\\ud800"\n    description: d\n')
    assert found[0].line == 3
    assert "unpaired surrogate" in found[0].message
    "\n".join(map(str, found)).encode("utf-8")  # can be printed and logged


def _problem_of_file(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    (problem,) = info.value.problems
    return str(problem)


def test_a_file_that_is_not_utf8_names_the_byte_and_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + "  host: caf\xe9\n".encode("latin-1"))
    assert _problem_of_file(path) == (
        f"{path}:3: not UTF-8 text: byte 0xE9 at column 12 (save it as UTF-8)"
    )


def test_a_directory_a_fifo_and_a_missing_file_cannot_be_read(tmp_path):
    assert _problem_of_file(tmp_path) == f"{tmp_path}: cannot read: a directory"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block until someone writes
    assert _problem_of_file(fifo) == f"{fifo}: cannot read: not a regular file"
    missing = tmp_path / "missing.yaml"
    assert _problem_of_file(missing) == f"{missing}: cannot read: No such file or directory"


def test_an_empty_file_and_an_oversized_one(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    assert _problem_of_file(empty) == f"{empty}: the file is empty"
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(SHIPPED.read_bytes() + b"#" * MAX_CONFIG_BYTES)
    assert "the file is larger than 1024 KiB" in _problem_of_file(huge)


def test_check_exits_2_with_the_line_of_an_esc(tmp_path, capsys):
    path = tmp_path / "channels.yaml"
    path.write_text(HEAD + "  host: \x1b[31mlocalhost\n")
    err = io.StringIO()
    assert check(path, {}, err=err) == 2
    assert err.getvalue().splitlines()[0] == (
        f"{path}:3: control character U+001B (ESC) is not allowed in YAML text (column 9)"
    )
    # The command line as operators type it.
    assert main(["check", "-c", str(path)]) == 2
    assert f"{path}:3: control character U+001B (ESC)" in capsys.readouterr().err
