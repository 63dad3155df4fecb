"""Commands that only read the store refuse a SQLite store that does not exist (a
mistyped path) instead of creating an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.router.ops.conftest import Cli, floor_config


@pytest.mark.parametrize(
    "command",
    [
        ["agents"],
        ["incidents"],
        ["conversations", "show", "#K7Q2M9"],
        ["dlq", "list"],
        ["staffing"],
    ],
)
def test_a_read_of_a_missing_sqlite_store_exits_2_and_creates_nothing(
    tmp_path: Path, cli: Cli, command: list[str]
) -> None:
    missing = tmp_path / "nodir" / "typo.sqlite3"
    config = floor_config(tmp_path, lambda data: data.update(store={"url": f"sqlite:///{missing}"}))
    code, out, err = cli(*command, "-c", config)
    assert (code, out) == (2, "")
    assert err == (
        f"{command[0]}: the store cannot be read: no SQLite database at {missing}"
        " (omnirouter run creates it; is the path right?)\n"
    )
    assert not missing.parent.exists()
