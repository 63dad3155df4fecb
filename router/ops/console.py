"""Tables and progress bars for the operator's commands, from `rich`.

A table on a terminal is sized to it; piped into a file or `grep` it is plain
text at a fixed width (no colours, no cut columns), so its lines can be read
by tools too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

T = TypeVar("T")

# Columns wide enough for ids and reasons when the output is not a terminal.
PLAIN_WIDTH = 200


def console(file: IO[str] | None = None) -> Console:
    out = sys.stdout if file is None else file
    tty = out.isatty()
    return Console(
        file=out,
        width=None if tty else PLAIN_WIDTH,
        no_color=not tty,
        highlight=False,
        markup=False,  # customers' text is shown as written: "[b]" stays "[b]"
        soft_wrap=not tty,
    )


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def when(at: datetime | None) -> str:
    """A time as operators read it in a table: UTC, to the second."""
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def progress(what: str, total: int | None, *, file: IO[str] | None = None) -> Iterator[Progress]:
    """A progress bar on stderr (stdout stays for results); off when stderr is not a
    terminal, where it would only be noise in a log."""
    err = sys.stderr if file is None else file
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=err),
        disable=not err.isatty(),
        transient=False,
    )
    with bar:
        bar.add_task(what, total=total)
        yield bar


def tracked(items: Iterable[T], bar: Progress) -> Iterator[T]:
    """`items`, advancing the bar's task by one after each."""
    task = bar.task_ids[0]
    for item in items:
        yield item
        bar.advance(task)
