"""`UTCDateTime` on SQLite: one step instead of two, the same text and values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from router.store.schema import UTCDateTime

SQLITE = sqlite.dialect()
MOMENTS = [
    datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 30, 5, 7, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(999, 1, 1, tzinfo=UTC),
]


def sqlalchemys(kind: str) -> Any:
    """What SQLAlchemy's own layers do: ours (`process_*_value`), then the dialect's."""
    t = UTCDateTime().dialect_impl(SQLITE)
    if kind == "bind":
        return sa.TypeDecorator.bind_processor(t, SQLITE)
    return sa.TypeDecorator.result_processor(t, SQLITE, None)


def ours(kind: str) -> Any:
    t = UTCDateTime().dialect_impl(SQLITE)
    return t.bind_processor(SQLITE) if kind == "bind" else t.result_processor(SQLITE, None)


@pytest.mark.parametrize("moment", MOMENTS)
def test_the_text_written_and_the_value_read_are_sqlalchemys(moment: datetime) -> None:
    text = ours("bind")(moment)
    assert text == sqlalchemys("bind")(moment)
    assert ours("result")(text) == sqlalchemys("result")(text) == moment
    assert ours("result")(text).tzinfo is UTC


@pytest.mark.parametrize(
    # the last but one is as long as our own text, with a zone of its own
    "text",
    [
        "2026-03-02 09:30:00",
        "2026-03-02T09:30:00+02:00",
        "2026-03-02",
        "2026-03-02T09:30:00.1+0200",
        None,
    ],
)
def test_text_written_otherwise_reads_as_sqlalchemy_reads_it(text: str | None) -> None:
    assert ours("result")(text) == sqlalchemys("result")(text)


def test_a_naive_time_is_refused_and_none_stays_none() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        ours("bind")(datetime(2026, 3, 2, 9, 30))
    assert ours("bind")(None) is None
    assert ours("result")(None) is None
    for write in (ours("bind"), sqlalchemys("bind")):  # a date: refused alike
        with pytest.raises(AttributeError):
            write(date(2026, 3, 2))


def test_other_dialects_keep_sqlalchemys_layers() -> None:
    pg = postgresql.dialect()
    t = UTCDateTime().dialect_impl(pg)
    write, theirs = t.bind_processor(pg), sa.TypeDecorator.bind_processor(t, pg)
    assert write is not None and theirs is not None
    for moment in MOMENTS:
        assert write(moment) == theirs(moment) == moment
        assert write(moment).tzinfo is UTC
