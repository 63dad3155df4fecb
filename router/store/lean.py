"""Running a built statement on SQLite straight through the driver's cursor.

SQLAlchemy's execution (an execution context, events, a result built around
the cursor) costs about 15 µs per statement on top of SQLite's own 4 µs, and
the routing runs about twenty statements per message. For statements built
once (`router.store.statements.built`) the plan is made once per statement and
set of parameter names, with SQLAlchemy's own compiler and types: the SQL
string, the order of its parameters, the Python-side defaults (`updated_at`),
and the bind and result processors (aware datetimes, JSON). Each execution then
only binds, runs and converts.

Anything else (an executemany, another dialect, a statement with SQL-side
defaults) returns no plan and goes through SQLAlchemy as usual. Driver errors
leave as SQLAlchemy's exceptions, as they would from `Connection.execute`.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import Column

Processor = Callable[[Any], Any] | None

_BUILT: set[int] = set()  # ids of statements `built` made (it keeps them alive)
_PLANS: dict[tuple[int, tuple[str, ...]], Plan | None] = {}


def register(statement: object) -> None:
    """`statement` was built once and is kept for the life of the process."""
    _BUILT.add(id(statement))


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    compiled: SQLCompiler
    names: tuple[str, ...]  # bind names in the order of the SQL's `?`
    binders: tuple[Processor, ...]
    defaults: tuple[tuple[str, Callable[[], Any]], ...]  # Python-side values to fill in
    row: type[tuple[Any, ...]] | None  # None: the statement returns no rows
    readers: tuple[Processor, ...]


def plan(statement: Executable, parameters: object, dialect: Dialect) -> Plan | None:
    """The plan for running `statement` with `parameters` on SQLite; None: use SQLAlchemy."""
    if dialect.name != "sqlite" or id(statement) not in _BUILT:
        return None
    if parameters is not None and not isinstance(parameters, Mapping):
        return None  # executemany
    keys = tuple(sorted(parameters or ()))
    key = (id(statement), keys)
    try:
        return _PLANS[key]
    except KeyError:
        made = _PLANS[key] = _make(statement, keys, dialect)
        return made


def _make(statement: Executable, keys: tuple[str, ...], dialect: Dialect) -> Plan | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if compiled.positiontup is None:
        return None
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
        made = _python_default(column, compiled.isupdate)
        if made is None:
            return None
        defaults.append((column.key, made))
    names = tuple(compiled.positiontup)
    binders = tuple(_binder(compiled.binds[name].type, dialect) for name in names)
    columns = list(getattr(statement, "exported_columns", ()))
    row: Any = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
    readers = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return Plan(compiled.string, compiled, names, binders, tuple(defaults), row, readers)


def _python_default(column: Column[Any], update: bool) -> Callable[[], Any] | None:
    default = column.onupdate if update else column.default
    if default is None or default.is_clause_element or default.is_sequence:
        return None  # computed by the database, or by SQLAlchemy's own machinery
    if default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
        return lambda: value
    if default.is_callable:
        fn = default.arg  # type: ignore[attr-defined]
        return lambda: fn(None)  # SQLAlchemy wraps a no-argument default to take a context
    return None


def run(plan: Plan, parameters: Mapping[str, Any] | None, sync: Connection) -> LeanResult:
    params = plan.compiled.construct_params(dict(parameters or {}))
    for name, make in plan.defaults:
        params[name] = make()
    values = tuple(
        bind(params[name]) if bind is not None else params[name]
        for name, bind in zip(plan.names, plan.binders, strict=True)
    )
    cursor = sync.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if sync.dispatch.before_cursor_execute:  # someone counts statements (the bench)
            sync.dispatch.before_cursor_execute(sync, cursor, plan.sql, values, None, False)
        try:
            cursor.execute(plan.sql, values)
            raw = cursor.fetchall() if plan.row is not None else []
        except sync.dialect.loaded_dbapi.Error as error:
            raise sa_exc.DBAPIError.instance(
                plan.sql, values, error, sync.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from error
        rows = [plan.row(*_read(plan.readers, r)) for r in raw] if plan.row is not None else []
        return LeanResult(rows, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()


def _read(readers: Sequence[Processor], raw: Sequence[Any]) -> Iterator[Any]:
    for reader, value in zip(readers, raw, strict=True):
        yield reader(value) if reader is not None else value


class LeanResult:
    """The part of SQLAlchemy's result the store's queries use, over fetched rows."""

    __slots__ = ("_lastrowid", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._lastrowid = lastrowid

    @property
    def inserted_primary_key(self) -> tuple[Any, ...]:
        return (self._lastrowid,)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise sa_exc.NoResultFound if not self._rows else sa_exc.MultipleResultsFound
        return self._rows[0]

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound
        return self.first()

    def scalar(self) -> Any:
        first = self.first()
        return None if first is None else first[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


def _binder(kind: Any, dialect: Dialect) -> Processor:
    # The dialect's own implementation (SQLite's DATETIME writes text), as SQLAlchemy uses.
    processor: Processor = kind.dialect_impl(dialect).bind_processor(dialect)
    return processor
