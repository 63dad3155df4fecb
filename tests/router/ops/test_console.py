"""Progress bars on a terminal only; tables that keep text as written when piped."""

from __future__ import annotations

import io

from router.ops.console import console, progress, table, tracked


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_counts_on_a_terminal_and_is_silent_in_a_log() -> None:
    screen = Terminal()
    with progress("replaying", 3, file=screen) as bar:
        assert list(tracked(["a", "b", "c"], bar)) == ["a", "b", "c"]
    assert "replaying" in screen.getvalue() and "3/3" in screen.getvalue()
    log = io.StringIO()
    with progress("replaying", 3, file=log) as bar:
        list(tracked(["a", "b", "c"], bar))
    assert log.getvalue() == ""


def test_a_piped_table_is_plain_text_with_nothing_cut() -> None:
    out = io.StringIO()
    t = table("ID", "REASON")
    long = "x" * 150
    t.add_row("1", f"[bold]{long}")
    console(out).print(t)
    text = out.getvalue()
    assert "\x1b[" not in text  # no colours in a file
    assert f"[bold]{long}" in text  # neither markup nor cut
