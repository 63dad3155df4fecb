"""A unit of work's connection as the routing code sees it: `execute`, `scalar`, `scalars`.

Two things satisfy `Conn`:

- SQLAlchemy's `AsyncConnection` (`Store.transaction()`: readers, the command line,
  connectors' checkpoints), where each statement is a hand-off to the driver's
  thread (aiosqlite) or a wait on the socket (psycopg) and back;
- `SyncConn`, a synchronous connection in the store's writer thread (`Store.work`).
  Its coroutines finish without ever suspending, so `run_now` drives a whole unit
  of work (a batch of records routed, dozens of statements) to its end in that
  thread: the event loop hands off once per unit, not once or more per statement.

Two ways past one statement, one answer: `execute_together` (reads that do not
depend on each other) and `send` / `send_kept` (writes the unit does not wait
for). On a unit of work's PostgreSQL connection they share round trips
(`router.store.lean`); anywhere else they run one statement at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Dialect, ScalarResult
from sqlalchemy.sql.base import Executable

from router.store import lean

T = TypeVar("T")


class Rows(Protocol):
    """The part of a statement's result the store's queries use."""

    @property
    def rowcount(self) -> int: ...

    @property
    def inserted_primary_key(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def all(self) -> Any: ...

    def first(self) -> Any: ...

    def one(self) -> Any: ...

    def one_or_none(self) -> Any: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...


# What a statement sent ahead returned, when asked for (`send_kept`).
Later = Callable[[], Rows]


class Conn(Protocol):
    """The part of a connection the store's queries use."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> Rows: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]: ...


class SyncConn:
    """A synchronous connection dressed as `Conn`: every call runs, and returns, at once.
    Statements built once run straight through the driver (`router.store.lean`).
    """

    __slots__ = ("lane", "sync")

    def __init__(self, sync: Connection) -> None:
        self.sync = sync
        self.lane = lean.Lane(sync)

    @property
    def dialect(self) -> Dialect:
        return self.lane.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Rows:
        plan = lean.plan(statement, parameters, self.lane.dialect)
        if plan is not None:
            return lean.run(plan, parameters, self.lane)
        lean.settle(self.sync)  # what was sent ahead runs first
        return self.sync.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        plan = lean.plan(statement, parameters, self.lane.dialect)
        if plan is not None:
            return lean.run(plan, parameters, self.lane).scalar()
        lean.settle(self.sync)
        return self.sync.scalar(statement, parameters)

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]:
        lean.settle(self.sync)
        return self.sync.scalars(statement, parameters)

    def execute_together(self, queries: Sequence[tuple[Executable, Any]]) -> list[Rows]:
        dialect = self.lane.dialect
        plans = [lean.plan(statement, parameters, dialect) for statement, parameters in queries]
        if any(plan is None for plan in plans):
            lean.settle(self.sync)
            return [self.sync.execute(statement, parameters) for statement, parameters in queries]
        runs = [(plan, parameters) for plan, (_, parameters) in zip(plans, queries, strict=True)]
        return list(lean.run_together(runs, self.lane))  # type: ignore[arg-type]

    def send(
        self, statement: Executable, parameters: Any = None, *, keep: bool = False
    ) -> Later | None:
        plan = lean.plan(statement, parameters, self.lane.dialect)
        if plan is not None:
            answer = lean.send(plan, parameters, self.lane, keep=keep)
            return answer.result if answer is not None else None
        lean.settle(self.sync)
        done = self.sync.execute(statement, parameters)
        return (lambda: done) if keep else None


async def execute_together(conn: Conn, queries: Sequence[tuple[Executable, Any]]) -> list[Rows]:
    """Run statements that do not read each other's effects (a delivery's reads), in one
    exchange with PostgreSQL when the connection is a unit of work's (see
    `lean.run_together`); otherwise one after another. Their results, in order."""
    if isinstance(conn, SyncConn):
        return conn.execute_together(queries)
    return [await conn.execute(statement, parameters) for statement, parameters in queries]


async def send(conn: Conn, statement: Executable, parameters: Any = None) -> None:
    """Run a statement whose result nobody reads (a write the unit does not look back at).
    A unit of work's PostgreSQL connection does not wait for it: it reaches the server with
    the next statement that waits for an answer, in the same round trip, and its error, if
    any, is raised there (see `lean.send`). Otherwise it runs at once."""
    if isinstance(conn, SyncConn):
        conn.send(statement, parameters)
        return
    await conn.execute(statement, parameters)


async def send_kept(conn: Conn, statement: Executable, parameters: Any = None) -> Later:
    """`send`, keeping what the statement returns: the function given back returns it, and
    waits for it (one round trip) if nothing has waited for the server since."""
    if isinstance(conn, SyncConn):
        later = conn.send(statement, parameters, keep=True)
        assert later is not None
        return later
    done = await conn.execute(statement, parameters)
    return lambda: done


class SuspendedError(RuntimeError):
    """A unit of work given to `Store.work` awaited something other than its connection."""


def run_now(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here, without an event loop.

    A unit of work in the writer thread may await only its `SyncConn` (and other
    coroutines that do the same); one that waits on anything else (a lock, a
    sleep, the bus) is a bug, stopped here before it commits.
    """
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise SuspendedError(
        "a unit of work in the store's thread awaited something other than the store"
    )
