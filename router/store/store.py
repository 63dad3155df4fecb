"""The data-access layer: one `Store` over SQLite (default) or PostgreSQL.

Everything goes through `Store.transaction()`, a unit of work that commits on
exit and rolls back on error; SQLAlchemy and driver errors leave it as
`StoreError` with `retriable` set (see `wrap.py`). The small helpers here
(`record_message`, checkpoints, `mark_processed`) each run in their own
transaction, or inside the caller's when given `conn=`, so an effect and its
bookkeeping can commit together.

SQLite specifics: WAL journal, foreign keys on, `synchronous=FULL` (an
accepted message survives power loss), a busy timeout, and write
transactions that start with `BEGIN IMMEDIATE` so two writers queue on the
lock instead of failing on a stale snapshot. Read-only units of work
(`transaction(readonly=True)`) start a deferred transaction and never wait for
writers.

The routing engine's units of work run in the store's writer thread (`work`):
a synchronous connection, the whole unit (dozens of statements) done there,
and one hand-off from the event loop and back. Through the async connection of
`transaction()` each statement crosses to the driver's thread and back several
times, which cost more than the routing itself.

Writers in one process take turns on SQLite's write lock in arrival order
(`_turns`): SQLite's own busy wait polls with growing sleeps, so a writer that
commits and at once begins again (the consume loop under a backlog) kept the
lock for seconds while another (the clock loop's due timers) slept through
each short gap. Now a waiting writer gets the lock as soon as the current unit
of work ends, and the clock's due timers go ahead of the writers already waiting
(`work(ahead=True)`). Other processes on the same file still queue on the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Self, TypeVar

import orjson
import structlog
from alembic.util.exc import CommandError
from sqlalchemy import Text, any_, event, func, select, text
from sqlalchemy import bindparam as sa_bind
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.schema import Table

from router.envelope import Envelope
from router.errors import StoreError
from router.sqlite import enable_wal
from router.store import lean
from router.store import migrate as migrations
from router.store.conn import Conn, SyncConn, run_now, send
from router.store.schema import checkpoints, messages, processed, utcnow
from router.store.statements import built
from router.store.statements import insert as dialect_insert
from router.store.turns import Turns
from router.store.url import Backend, StoreURL, parse
from router.store.wrap import wrap

log = structlog.get_logger(__name__)

_READONLY = "omnirouter_readonly"

T = TypeVar("T")


async def open_store(
    url: str, *, migrate: bool = True, create: bool = True, lock_timeout: float = 5.0
) -> Store:
    """Connect to the store at `url` and, unless `migrate=False`, migrate it to head.

    `create=False` (the commands that only read the store) refuses a SQLite file that
    does not exist, creating nothing: a mistyped path would otherwise read as an empty
    store. `lock_timeout` (seconds) bounds every wait for a lock (SQLite busy timeout,
    PostgreSQL `lock_timeout`); running out raises a retriable `StoreError`.
    """
    parsed = parse(url)
    path = parsed.sqlite_path
    if path is not None and not create and not path.is_file():
        raise StoreError(
            f"the store cannot be read: no SQLite database at {path}"
            " (omnirouter run creates it; is the path right?)",
            retriable=False,
        )
    if path is not None and create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"store: cannot create the directory {str(path.parent)!r} for {parsed.safe}: {exc}",
                retriable=False,
            ) from exc
    store = Store(
        _create_engine(parsed, lock_timeout),
        parsed,
        lock_timeout=lock_timeout,
        writer=_create_sync_engine(parsed, lock_timeout),
    )
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store


class Store:
    """The connection pool and the units of work on it. Create with `open_store`."""

    PING_TIMEOUT = 2.0  # seconds

    def __init__(
        self,
        engine: AsyncEngine,
        url: StoreURL,
        *,
        writer: Engine,
        lock_timeout: float = 5.0,
    ) -> None:
        self._engine = engine
        self._url = url
        self._closed = False
        self._lock_timeout = lock_timeout
        # SQLite: this process's writers, one at a time, first come first served (the
        # turn goes to the longest waiter, even when its holder asks again).
        self._turns = Turns() if url.backend == "sqlite" else None
        self._waiting = 0  # writers waiting for their turn
        # `work`: a synchronous engine on the same database, used by one thread only.
        self._writer = writer
        self._thread: ThreadPoolExecutor | None = None
        # `work` units one at a time on every backend, queued in arrival order: a unit
        # sees the routing state it shares with the event loop (the agents' board, a
        # reloaded config) as it was when its turn came, never half-changed.
        self._work_turns = self._turns if self._turns is not None else Turns()

    # --- lifecycle --------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self._url.backend

    @property
    def url(self) -> str:
        """The store URL with its password hidden."""
        return self._url.safe

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def writer(self) -> Engine:
        """The synchronous engine of the writer thread (`work`)."""
        return self._writer

    async def close(self) -> None:
        """Close every pooled connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            # Let a unit of work in flight finish (it may be committing), then stop the thread.
            await asyncio.to_thread(self._thread.shutdown)
        self._writer.dispose()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        """True if the database answers within `PING_TIMEOUT` seconds. Never raises."""
        if self._closed:
            return False
        try:
            async with asyncio.timeout(self.PING_TIMEOUT), self._engine.connect() as conn:
                await conn.execution_options(**{_READONLY: True})
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # a readiness probe reports, it does not raise
            log.debug("store.ping_failed", url=self.url, error=type(exc).__name__)
            return False
        return True

    # --- schema -----------------------------------------------------------------------

    async def migrate(self) -> None:
        """Migrate the database to the packaged head revision (a no-op when there)."""
        try:
            async with self.transaction() as conn:
                before = await conn.run_sync(migrations.current)
                await conn.run_sync(migrations.upgrade)
                after = await conn.run_sync(migrations.current)
        except CommandError as exc:
            raise StoreError(
                f"store: cannot migrate {self.url}: {exc} (was it migrated by a newer omnirouter?)",
                retriable=False,
            ) from exc
        if before != after:
            log.info("store.migrated", url=self.url, before=before, after=after)

    async def schema_version(self) -> str | None:
        """The schema revision of the database (None: never migrated)."""
        async with self.transaction(readonly=True) as conn:
            return await conn.run_sync(migrations.current)

    # --- units of work ----------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """A unit of work: commits when the block ends, rolls back if it raises.

        Database errors raised inside come out as `StoreError`; anything else
        the block raises passes through unchanged (after the rollback).
        """
        if self._closed:
            raise StoreError("store: closed", retriable=False)
        async with self._turn(readonly):
            try:
                async with self._engine.connect() as conn:
                    if readonly:
                        await conn.execution_options(
                            **{_READONLY: True, "postgresql_readonly": True}
                        )
                    async with conn.begin():
                        yield conn
            except (SQLAlchemyError, OSError) as exc:
                raise wrap(exc) from exc

    async def work(
        self,
        unit: Callable[[Conn], Coroutine[Any, Any, T]],
        *,
        urgent: bool = True,
        ahead: bool = False,
    ) -> T:
        """Run `unit(conn)` as one unit of work in the store's writer thread: it commits
        when `unit` returns and rolls back if it raises. What it returns comes back.

        An `urgent` unit waiting for its turn counts in `writers_waiting`, so a long unit
        (a batch) ends early for it; bookkeeping that can wait a batch (the outbox's
        marks) is not urgent. A unit `ahead` (the clock's due timers) takes the next turn,
        before the units already waiting for theirs.

        `unit` may await its connection only (see `router.store.conn`); it runs in
        another thread, so in-memory state it touches must be touched by units of
        work only, or read by the event loop without iterating it. Database errors
        come out as `StoreError`, anything else as `unit` raised it.
        """
        if self._closed:
            raise StoreError("store: closed", retriable=False)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="omnirouter-store")
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the log context goes along
        async with self._turn(False, self._work_turns, counted=urgent, ahead=ahead):
            try:
                # A cancelled caller stops waiting, but the unit runs on to its commit or
                # rollback: the next unit queues behind it in the same thread.
                return await loop.run_in_executor(self._thread, context.run, self._work_now, unit)
            except (SQLAlchemyError, OSError) as exc:
                raise wrap(exc) from exc

    def _work_now(self, unit: Callable[[Conn], Coroutine[Any, Any, T]]) -> T:
        with self._writer.connect() as sync, sync.begin():
            try:
                done = run_now(unit(SyncConn(sync)))
            except BaseException as exc:
                lean.settle(sync, exc)  # statements sent ahead: closed, not waited for
                raise
            lean.settle(sync)  # before the commit: their errors fail the unit
            return done

    @asynccontextmanager
    async def _turn(
        self,
        readonly: bool,
        turns: Turns | None = None,
        *,
        counted: bool = True,
        ahead: bool = False,
    ) -> AsyncIterator[None]:
        """A writer's turn on SQLite's write lock (readers and PostgreSQL need none)."""
        turns = turns if turns is not None else self._turns
        if turns is None or readonly:
            yield
            return
        self._waiting += counted
        try:
            async with asyncio.timeout(self._lock_timeout):
                await turns.acquire(ahead=ahead)
        except TimeoutError:
            # As SQLite's busy timeout would have said: the lock may free up, try again.
            raise StoreError(
                f"store: waited {self._lock_timeout:g}s for a turn to write", retriable=True
            ) from None
        finally:
            self._waiting -= counted
        try:
            yield
        finally:
            turns.release()

    @property
    def writers_waiting(self) -> int:
        """Units of work in this process waiting for their turn to write (SQLite): a long
        one (a batch) should end early and let them in."""
        return self._waiting

    @asynccontextmanager
    async def _unit(self, conn: Conn | None, *, readonly: bool = False) -> AsyncIterator[Conn]:
        if conn is not None:
            yield conn
            return
        async with self.transaction(readonly=readonly) as own:
            yield own

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        if self.backend == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # --- messages and dedupe ----------------------------------------------------------

    async def record_message(self, envelope: Envelope, *, conn: Conn | None = None) -> bool:
        """Store a message once, keyed by its envelope id: True if new, False if seen.

        A non-null `envelope.conversation_id` must name a stored conversation.
        """
        row = self._message_row(envelope)
        async with self._unit(conn) as c:
            inserted = (await c.execute(_record_message(c), row)).first()
        return inserted is not None

    async def add_message(self, envelope: Envelope, *, conn: Conn) -> None:
        """`record_message` in the caller's unit of work, for a caller that does not ask
        whether it was new: the unit need not wait for it (`router.store.conn.send`)."""
        await send(conn, _record_message(conn), self._message_row(envelope))

    @staticmethod
    def _message_row(envelope: Envelope) -> dict[str, Any]:
        return {
            "id": envelope.id,
            "conversation_id": envelope.conversation_id,
            "channel": envelope.channel,
            "channel_type": envelope.channel_type,
            "thread_key": envelope.thread_key,
            "kind": envelope.kind,
            "direction": envelope.direction,
            "sender_address": envelope.sender.address,
            "sender_name": envelope.sender.name,
            "sender_role": envelope.sender.role,
            "sent_at": envelope.sent_at,
            "received_at": envelope.received_at,
            "subject": envelope.subject,
            "text": envelope.text,
            "envelope": envelope.model_dump(mode="json"),
            "stored_at": utcnow(),
        }

    async def mark_processed(
        self, consumer: str, envelope_id: str, *, conn: Conn | None = None
    ) -> bool:
        """Note that `consumer` applied `envelope_id`: True the first time, then False.

        Call it in the same transaction as the record's effects, so a record
        redelivered after a crash is recognised and skipped.
        """
        row = {"consumer": consumer, "envelope_id": envelope_id, "processed_at": utcnow()}
        async with self._unit(conn) as c:
            inserted = (await c.execute(_mark_processed(c), row)).first()
        return inserted is not None

    async def processed_among(
        self, consumer: str, envelope_ids: Sequence[str], *, conn: Conn
    ) -> set[str]:
        """Which of `envelope_ids` `consumer` has applied: a batch's dedupe in one query."""
        if not envelope_ids:
            return set()
        if conn.dialect.name == "postgresql":
            params = {"b_consumer": consumer, "b_ids": list(envelope_ids)}
            return {str(r[0]) for r in await conn.execute(_processed_among(conn), params)}
        stmt = select(processed.c.envelope_id).where(
            processed.c.consumer == consumer, processed.c.envelope_id.in_(list(envelope_ids))
        )
        return {str(v) for v in (await conn.scalars(stmt)).all()}

    async def mark_processed_all(
        self, consumer: str, envelope_ids: Sequence[str], *, conn: Conn
    ) -> None:
        """Note that `consumer` applied each of `envelope_ids` (which `processed_among` found
        new, in this transaction), in one statement. If another process noted one of them
        meanwhile (PostgreSQL: it committed after our check), it raises a retriable
        `StoreError`: the caller's transaction must roll back, or that record applies twice."""
        if not envelope_ids:
            return
        now = utcnow()
        if conn.dialect.name == "postgresql":
            params = {"b_consumer": consumer, "b_ids": list(envelope_ids), "b_now": now}
            noted = len((await conn.execute(_mark_processed_all(conn), params)).all())
        else:
            # One statement built once, its rows sent together (SQLAlchemy's
            # insertmanyvalues): one made afresh with the batch's values cost 4 ms a batch.
            rows = [
                {"consumer": consumer, "envelope_id": i, "processed_at": now} for i in envelope_ids
            ]
            noted = len((await conn.execute(_mark_processed(conn), rows)).all())
        if noted != len(envelope_ids):
            raise StoreError(
                f"store: {len(envelope_ids) - noted} of {len(envelope_ids)} records were"
                f" applied by another {consumer} meanwhile",
                retriable=True,
            )

    # --- connector checkpoints --------------------------------------------------------

    async def get_checkpoint(self, name: str, key: str, *, conn: Conn | None = None) -> str | None:
        """The value connector `name` saved under `key`, or None."""
        async with self._unit(conn, readonly=True) as c:
            value = await c.scalar(checkpoint_query(c), {"b_name": name, "b_key": key})
        return value if value is None else str(value)

    async def set_checkpoint(
        self, name: str, key: str, value: str, *, conn: Conn | None = None
    ) -> None:
        """Save (insert or replace) connector `name`'s `key`."""
        now = utcnow()
        stmt = self._insert(checkpoints).values(
            connector=name, key=key, value=value, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["connector", "key"], set_={"value": value, "updated_at": now}
        )
        async with self._unit(conn) as c:
            await c.execute(stmt)

    async def prune_checkpoints(
        self, name: str, prefix: str, before: datetime, *, limit: int = 5000
    ) -> int:
        """Delete connector `name`'s keys starting with `prefix` and last written before
        `before` (at most `limit`, so one call never holds the write lock long)."""
        oldest = (
            select(checkpoints.c.key)
            .where(
                checkpoints.c.connector == name,
                checkpoints.c.key.startswith(prefix, autoescape=True),
                checkpoints.c.updated_at < before,
            )
            .limit(limit)
        )
        stmt = checkpoints.delete().where(
            checkpoints.c.connector == name, checkpoints.c.key.in_(oldest.scalar_subquery())
        )
        async with self.transaction() as c:
            result = await c.execute(stmt)
        return int(result.rowcount or 0)


@built
def _record_message(dialect: str) -> Any:
    return (
        dialect_insert(dialect, messages)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(messages.c.id)
    )


# PostgreSQL: a batch's ids as one array parameter, so the statement is the same for every
# batch (built once, prepared by the driver). A list of values (SQLite's form) made a new
# statement per batch size, compiled by SQLAlchemy and parsed by psycopg (6-7 ms a batch).
@built
def _processed_among(_: str) -> Any:
    return select(processed.c.envelope_id).where(
        processed.c.consumer == sa_bind("b_consumer"),
        processed.c.envelope_id == any_(sa_bind("b_ids", type_=postgresql.ARRAY(Text))),
    )


@built
def _mark_processed_all(dialect: str) -> Any:
    rows = select(
        sa_bind("b_consumer", type_=Text),
        func.unnest(sa_bind("b_ids", type_=postgresql.ARRAY(Text))),
        sa_bind("b_now", type_=processed.c.processed_at.type),
    )
    return (
        dialect_insert(dialect, processed)
        .from_select(["consumer", "envelope_id", "processed_at"], rows)
        .on_conflict_do_nothing(index_elements=["consumer", "envelope_id"])
        .returning(processed.c.envelope_id)
    )


@built
def _mark_processed(dialect: str) -> Any:
    return (
        dialect_insert(dialect, processed)
        .on_conflict_do_nothing(index_elements=["consumer", "envelope_id"])
        .returning(processed.c.envelope_id)
    )


def checkpoint_select() -> Any:
    """A saved checkpoint's value (`b_name`, `b_key`), for statements built on it."""
    return select(checkpoints.c.value).where(
        checkpoints.c.connector == sa_bind("b_name"), checkpoints.c.key == sa_bind("b_key")
    )


@built
def checkpoint_query(_: str) -> Any:
    """A saved checkpoint's value (`b_name`, `b_key`)."""
    return checkpoint_select()


def _create_engine(url: StoreURL, lock_timeout: float) -> AsyncEngine:
    args = _engine_args(url, lock_timeout)
    engine = create_async_engine(url.url, **args)
    if url.backend == "sqlite":
        _sqlite_events(engine.sync_engine, busy_timeout_ms=int(lock_timeout * 1000))
    return engine


def _create_sync_engine(url: StoreURL, lock_timeout: float) -> Engine:
    """The writer thread's engine (`Store.work`): the same database and session settings,
    through the driver's synchronous mode."""
    engine = create_engine(url.sync_url, **_engine_args(url, lock_timeout))
    if url.backend == "sqlite":
        _sqlite_events(engine, busy_timeout_ms=int(lock_timeout * 1000))
    return engine


def _engine_args(url: StoreURL, lock_timeout: float) -> dict[str, Any]:
    def dumps(obj: object) -> str:
        return orjson.dumps(obj).decode()

    args: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": orjson.loads}
    if url.backend == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": 10}
        if "application_name" not in url.url.query:
            connect_args["application_name"] = "omnirouter"
        if "options" not in url.url.query:
            connect_args["options"] = f"-c lock_timeout={int(lock_timeout * 1000)}"
        return args | {"pool_pre_ping": True, "connect_args": connect_args}
    return args | {"connect_args": {"timeout": lock_timeout}}


def _sqlite_events(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (the driver's implicit BEGIN is deferred and late).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            enable_wal(cursor, busy_timeout_ms / 1000)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")
