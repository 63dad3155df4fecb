"""Running a built statement straight through the driver's cursor (pysqlite, psycopg 3).

SQLAlchemy's execution (an execution context, events, a result built around
the cursor) costs about 15 µs per statement on top of SQLite's own 4 µs, and
the routing runs about twenty statements per message. For statements built
once (`router.store.statements.built`) the plan is made once per statement and
set of parameter names, with SQLAlchemy's own compiler and types: the SQL
string, its parameters (SQLite's `?`, PostgreSQL's own `$1` for psycopg's raw cursor,
which then has no `%(name)s` to rewrite on every run; in order, with the casts
SQLAlchemy renders), the Python-side defaults (`updated_at`), the bind
and result processors (aware datetimes, JSON), and on PostgreSQL the primary key
an INSERT returns. Each execution then only binds, runs and converts. psycopg
prepares a statement on the server once it has run a few times on a connection
(`prepare_threshold`), as it does under SQLAlchemy.

On PostgreSQL, reads that do not depend on each other run together
(`run_together`), and writes whose results the unit does not read are sent
ahead (`send`): both ride psycopg's pipeline mode, so a round trip carries
several statements; the pipeline is closed (`settle`) before the connection
is used any other way and before the unit commits.

Anything else (an executemany, another driver, a statement with SQL-side
defaults) returns no plan and goes through SQLAlchemy as usual. Driver errors
leave as SQLAlchemy's exceptions, as they would from `Connection.execute`.
"""

from __future__ import annotations

import copy
import operator
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import Column

Processor = Callable[[Any], Any] | None

_BUILT: set[int] = set()  # ids of statements `built` made (it keeps them alive)
_DRIVERS = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}
_PLANS: dict[tuple[int, tuple[str, ...]], Plan | None] = {}
# The processors a statement's values or columns have, by place (those without one skipped).
ByPlace = tuple[tuple[int, Callable[[Any], Any]], ...]
_READERS: dict[int, ByPlace] = {}  # by id of a plan (plans are kept)
_CURSOR = "omnirouter_lean_cursor"
_CURSORS = "omnirouter_lean_cursors"  # for statements run together
_SEND_CURSOR = "omnirouter_lean_send_cursor"  # for statements sent ahead (`send`)
_PIPELINE = "omnirouter_lean_pipeline"  # the pipeline `send` opened, until `settle`
_KEPT = "omnirouter_lean_kept"  # answers to statements sent ahead, until `settle`
_KEPT_CURSORS = "omnirouter_lean_kept_cursors"  # one per kept answer, made once
_RAW_DIALECTS: dict[int, Dialect] = {}  # by id of the engine's dialect (kept with it)


def register(statement: object) -> None:
    """`statement` was built once and is kept for the life of the process."""
    _BUILT.add(id(statement))


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    names: tuple[str, ...]  # bind names (positional: in the order of the SQL's `?`)
    positional: bool  # values as a tuple (`?`), else as a dict (`%(name)s`)
    # Where each bind's value comes from, in `names`' order: the caller's parameter of that
    # key, a Python-side default to call (`updated_at`), or the value the statement holds.
    sources: tuple[tuple[int, Any], ...]
    # The values in `names`' order when every one is the caller's (most statements): one
    # call, not a step per value.
    gather: Callable[[Mapping[str, Any]], list[Any]] | None
    binding: ByPlace
    row: type[tuple[Any, ...]] | None  # None: the statement returns no rows
    columns: tuple[Column[Any], ...]  # what it returns
    returns_key: bool  # an INSERT whose RETURNING is only its primary key (PostgreSQL)


def plan(statement: Executable, parameters: object, dialect: Dialect) -> Plan | None:
    """The plan for running `statement` with `parameters`; None: use SQLAlchemy."""
    if id(statement) not in _BUILT or (dialect.name, dialect.driver) not in _DRIVERS:
        return None
    if parameters is not None and type(parameters) is not dict:
        if not isinstance(parameters, Mapping):
            return None  # executemany
    # Keyed by the names in the caller's order (a caller passes them the same way each
    # time); a plan is made once per order, from the names sorted.
    key = (id(statement), tuple(parameters or ()))
    try:
        return _PLANS[key]
    except KeyError:
        made = _PLANS[key] = _make(statement, tuple(sorted(key[1])), dialect)
        return made


def _make(statement: Executable, keys: tuple[str, ...], dialect: Dialect) -> Plan | None:
    compiled = statement.compile(dialect=_compiling(dialect), column_keys=list(keys))  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if compiled.post_compile_params or compiled.escaped_bind_names:
        return None  # expanding IN, or names the SQL spells otherwise: SQLAlchemy's work
    positional = compiled.positiontup is not None
    defaults: dict[str, Callable[[], Any]] = {}
    for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
        made = _python_default(column, compiled.isupdate)
        if made is None:
            return None
        defaults[column.key] = made
    names = tuple(compiled.positiontup or compiled.bind_names.values())
    binders = [_binder(compiled.binds[name].type, dialect) for name in names]
    sources: list[tuple[int, Any]] = []
    for name in names:
        bind = compiled.binds[name]
        if name in defaults:
            sources.append((_DEFAULT, defaults[name]))
        elif bind.key in keys:
            sources.append((_GIVEN, bind.key))
        elif name in keys:
            sources.append((_GIVEN, name))
        elif bind.callable is not None or bind.required or bind.expanding:
            return None  # a value to compute or one missing: SQLAlchemy's work (and error)
        else:
            sources.append((_HELD, bind.value))
    columns = list(getattr(statement, "exported_columns", ()))
    # PostgreSQL's INSERT returns the primary key SQLAlchemy would give as
    # `inserted_primary_key` (SQLite's comes from `lastrowid`).
    key = list(getattr(compiled, "implicit_returning", None) or ())
    table = getattr(compiled.statement, "table", None)
    if key and (columns or table is None or key != list(table.primary_key)):
        return None
    row: Any = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
    return Plan(
        compiled.string,
        names,
        positional,
        tuple(sources),
        _gathering(sources),
        _by_place(binders),
        row,
        tuple(columns),
        bool(key),
    )


def _gathering(sources: list[tuple[int, Any]]) -> Callable[[Mapping[str, Any]], list[Any]] | None:
    if not sources or any(how != _GIVEN for how, _ in sources):
        return None
    if len(sources) == 1:
        key = sources[0][1]
        return lambda given: [given[key]]
    get = operator.itemgetter(*(key for _, key in sources))
    return lambda given: list(get(given))


def _compiling(dialect: Dialect) -> Dialect:
    """The dialect to compile plans with. psycopg: PostgreSQL's own `$1` placeholders, as
    its raw cursor takes them (no `%(name)s` to rewrite on every run)."""
    if dialect.name != "postgresql":
        return dialect
    try:
        return _RAW_DIALECTS[id(dialect)]
    except KeyError:
        raw = copy.copy(dialect)
        raw.paramstyle, raw.positional = "numeric_dollar", True
        raw.identifier_preparer = raw.preparer(raw)
        _RAW_DIALECTS[id(dialect)] = raw
        return raw


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


_GIVEN, _DEFAULT, _HELD = 0, 1, 2


class Lane:
    """A unit of work's way to the driver, made once per unit (by `SyncConn`): what every
    statement of the unit would otherwise look up again (the connection's own cursor, its
    `info`, whether someone listens for statements), about a third of the wrapping's cost
    of a short statement."""

    __slots__ = ("announce", "cursor", "dialect", "error", "info", "postgres", "sync")

    def __init__(self, sync: Connection) -> None:
        self.sync = sync
        self.dialect = sync.dialect
        self.info = _info(sync)
        self.postgres = self.dialect.name == "postgresql"
        self.error: type[Exception] = self.dialect.loaded_dbapi.Error
        lean = (self.dialect.name, self.dialect.driver) in _DRIVERS
        self.cursor: Any = _cursor(sync) if lean else None  # no plan runs on another driver
        # Someone counts statements (the bench): listeners are added when a store is set
        # up, so asking once per unit is enough. Two attributes first, as SQLAlchemy checks
        # for events itself; SQLite's store has events (BEGIN IMMEDIATE), not this one.
        events = sync._has_events or sync.engine._has_events
        self.announce = bool(events and sync.dispatch.before_cursor_execute)


def run(plan: Plan, parameters: Mapping[str, Any] | None, lane: Lane) -> LeanResult:
    values = _bind(plan, parameters)
    cursor = lane.cursor
    if lane.announce:
        _announce(lane.sync, cursor, plan, values)
    pipelined = lane.postgres and _PIPELINE in lane.info  # statements were sent ahead
    try:
        cursor.execute(plan.sql, values)
        if pipelined:
            _settle(lane.sync)  # one round trip for them and this one
        raw = cursor.fetchall() if plan.row is not None or plan.returns_key else []
    except lane.error as error:
        if not pipelined:
            raise _error(plan.sql, values, error, lane.sync) from error
        _settle(lane.sync, error)
        raise _error(_TOGETHER, None, error, lane.sync) from error
    return _result(plan, cursor, raw, lane)


def run_together(
    runs: Sequence[tuple[Plan, Mapping[str, Any] | None]], lane: Lane
) -> list[LeanResult]:
    """Run statements that do not depend on each other's results (reads) in one exchange
    with the server: psycopg's pipeline mode sends them all (after what was sent ahead),
    then one sync reads every result, so they cost one round trip instead of one each.
    SQLite (in process) runs them in turn."""
    if not lane.postgres or (len(runs) < 2 and _PIPELINE not in lane.info):
        return [run(plan, parameters, lane) for plan, parameters in runs]
    sync = lane.sync
    cursors = _cursors(sync, len(runs))
    bound = [(plan, _bind(plan, parameters)) for plan, parameters in runs]
    results: list[LeanResult] = []
    at = 0  # the statement an error belongs to
    try:
        _pipeline(sync)
        for at, (plan, values) in enumerate(bound):
            if lane.announce:
                _announce(sync, cursors[at], plan, values)
            cursors[at].execute(plan.sql, values)
    except lane.error as error:
        _settle(sync, error)
        raise _error(bound[at][0].sql, bound[at][1], error, sync) from error
    try:
        _settle(sync)
    except lane.error as error:
        raise _error(_TOGETHER, None, error, sync) from error
    for (plan, _), cursor in zip(bound, cursors, strict=False):
        raw = cursor.fetchall() if plan.row is not None or plan.returns_key else []
        results.append(_result(plan, cursor, raw, lane))
    return results


# What an error names when it came from one of several statements sent together.
_TOGETHER = "(statements sent together)"


class Answer:
    """What a statement sent ahead with `keep` returned, once it is in: asked for before
    that, the connection settles first (one round trip)."""

    __slots__ = ("_cursor", "_lane", "_plan", "_result")

    def __init__(
        self, plan: Plan, cursor: Any, lane: Lane, result: LeanResult | None = None
    ) -> None:
        self._plan, self._cursor, self._lane, self._result = plan, cursor, lane, result

    def result(self) -> LeanResult:
        if self._result is None:
            settle(self._lane.sync)
        if self._result is None:
            raise RuntimeError("the statement's unit of work failed before its answer came")
        return self._result

    def _take(self) -> None:
        plan, cursor = self._plan, self._cursor
        raw = cursor.fetchall() if plan.row is not None or plan.returns_key else []
        self._result = _result(plan, cursor, raw, self._lane)


def send(
    plan: Plan, parameters: Mapping[str, Any] | None, lane: Lane, *, keep: bool = False
) -> Answer | None:
    """Run a statement without waiting for it. On PostgreSQL it goes into the pipeline
    (psycopg's pipeline mode) and the connection moves on: the next statement that does
    wait for an answer (`run`, `run_together`, anything else through the connection, or
    the end of the unit of work: `settle`) takes it to the server in the same round trip,
    and raises its error, if it failed. SQLite runs it at once. With `keep`, what it
    returns is kept (its `Answer`); otherwise nobody reads it."""
    if not lane.postgres:
        done = run(plan, parameters, lane)
        return Answer(plan, None, lane, done) if keep else None
    sync = lane.sync
    values = _bind(plan, parameters)
    info = lane.info
    answer = None
    if keep:
        kept: list[Answer] = info.setdefault(_KEPT, [])
        cursor = _pooled(sync, _KEPT_CURSORS, len(kept) + 1)[len(kept)]
        answer = Answer(plan, cursor, lane)
    else:
        cursor = info.get(_SEND_CURSOR)
        if cursor is None:
            cursor = info[_SEND_CURSOR] = _new_cursor(sync)
    try:
        _pipeline(sync)
        if lane.announce:
            _announce(sync, cursor, plan, values)
        cursor.execute(plan.sql, values)  # unkept: its result replaces the last one's
    except lane.error as error:
        _settle(sync, error)
        raise _error(plan.sql, values, error, sync) from error
    if answer is not None:
        info[_KEPT].append(answer)
    return answer


def settle(sync: Connection, failed: BaseException | None = None) -> None:
    """Take what was sent ahead to the server and wait for it (one round trip): before
    the connection is used otherwise, and before the unit of work commits. The first error
    among those statements is raised, as SQLAlchemy's exception (without the values);
    with `failed` (the unit is failing already) none is, and the pipeline only closes."""
    try:
        _settle(sync, failed)
    except sync.dialect.loaded_dbapi.Error as error:
        raise _error(_TOGETHER, None, error, sync) from error


def _settle(sync: Connection, failed: BaseException | None = None) -> None:
    info = _info(sync)
    pipeline = info.pop(_PIPELINE, None)
    if pipeline is None:
        return
    kept: list[Answer] = info.pop(_KEPT, [])
    if failed is not None:
        # Closed as psycopg closes it when its block raises: a stand-in is thrown in, so
        # the unit's own exception keeps its traceback (contextlib resets the thrown one's).
        pipeline.__exit__(_Abandoned, _Abandoned(), None)
        return
    pipeline.__exit__(None, None, None)
    for answer in kept:  # in before their cursors serve again
        answer._take()


class _Abandoned(Exception):
    """The unit of work failed while statements were sent ahead (see `_settle`)."""


def _pipeline(sync: Connection) -> None:
    """Open the connection's pipeline, unless it is open (entering sends nothing)."""
    info = _info(sync)
    if _PIPELINE not in info:
        raw_conn: Any = sync.connection.dbapi_connection
        pipeline = raw_conn.pipeline()
        pipeline.__enter__()
        info[_PIPELINE] = pipeline


def _info(sync: Connection) -> dict[Any, Any]:
    return sync.connection.info


def _bind(plan: Plan, parameters: Mapping[str, Any] | None) -> Sequence[Any] | dict[str, Any]:
    if plan.gather is not None and parameters is not None:
        bound = plan.gather(parameters)
    else:
        given = parameters or {}
        bound = [
            (given[what] if how == _GIVEN else what() if how == _DEFAULT else what)
            for how, what in plan.sources
        ]
    for i, bind in plan.binding:
        bound[i] = bind(bound[i])
    return tuple(bound) if plan.positional else dict(zip(plan.names, bound, strict=True))


def _announce(
    sync: Connection, cursor: Any, plan: Plan, values: Sequence[Any] | dict[str, Any]
) -> None:
    """Tell those who listen for statements (`Lane.announce`) of this one."""
    sync.dispatch.before_cursor_execute(sync, cursor, plan.sql, values, None, False)


def _result(plan: Plan, cursor: Any, raw: list[Any], lane: Lane) -> LeanResult:
    if plan.returns_key:
        return LeanResult([], cursor.rowcount, tuple(raw[0]) if raw else None)
    rows: list[Any] = []
    if plan.row is not None:
        # The row type's own tuple, made as `_make` makes it, without its call (the driver
        # gives every row the statement's columns).
        row, make = plan.row, tuple.__new__
        reading = _readers(plan, cursor, lane.dialect)
        if not reading:
            rows = [make(row, r) for r in raw]
        else:
            for r in raw:
                values = list(r)
                for i, read in reading:
                    values[i] = read(values[i])
                rows.append(make(row, values))
    key = None if lane.postgres else (cursor.lastrowid,)
    return LeanResult(rows, cursor.rowcount, key)


def _cursor(sync: Connection) -> Any:
    """The connection's own cursor for built statements, made once: a psycopg cursor costs
    more to make (its own copy of the type adapters) than a short statement takes to run.
    The pool forgets it with the connection (`info` is cleared when it is replaced)."""
    info = sync.connection.info
    cursor = info.get(_CURSOR)
    if cursor is None:
        cursor = info[_CURSOR] = _new_cursor(sync)
    return cursor


def _new_cursor(sync: Connection) -> Any:
    raw: Any = sync.connection.dbapi_connection
    if sync.dialect.name == "postgresql":
        from psycopg import RawCursor  # psycopg is the `postgres` extra's

        return RawCursor(raw)
    return raw.cursor()


def _cursors(sync: Connection, count: int) -> list[Any]:
    """`count` cursors of the connection's own for statements run together, made once."""
    return _pooled(sync, _CURSORS, count)


def _pooled(sync: Connection, pool: str, count: int) -> list[Any]:
    """At least `count` cursors of the connection's own `pool`, made once."""
    cursors: list[Any] = sync.connection.info.setdefault(pool, [])
    while len(cursors) < count:
        cursors.append(_new_cursor(sync))
    return cursors


def _error(
    sql: str, values: Sequence[Any] | dict[str, Any] | None, error: Any, sync: Connection
) -> Any:
    """SQLAlchemy's exception for a driver error, without the values (personal data). A lost
    connection fails the rollback that follows, which invalidates it, as SQLAlchemy's would."""
    return sa_exc.DBAPIError.instance(
        sql, values, error, sync.dialect.loaded_dbapi.Error, hide_parameters=True
    )


def _readers(plan: Plan, cursor: Any, dialect: Dialect) -> ByPlace:
    """The result processors of `plan`'s columns there are, by place, made at its first run:
    some (psycopg's numbers) depend on the type the server says it sent, as in SQLAlchemy's
    own results."""
    try:
        return _READERS[id(plan)]
    except KeyError:
        made = _READERS[id(plan)] = _by_place(
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(plan.columns, cursor.description, strict=True)
        )
        return made


def _by_place(processors: Iterable[Processor]) -> ByPlace:
    return tuple((i, process) for i, process in enumerate(processors) if process is not None)


class LeanResult:
    """The part of SQLAlchemy's result the store's queries use, over fetched rows."""

    __slots__ = ("_rows", "inserted_primary_key", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, key: tuple[Any, ...] | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.inserted_primary_key = key

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
