"""Driver and SQLAlchemy errors become `StoreError`, with `retriable` set right.

Retriable: the cause is outside the record and may pass (a lock or busy
timeout, a deadlock or serialization failure, a lost or refused connection,
an exhausted pool). Not retriable: the record or the code is wrong
(a constraint violated, bad data, bad SQL).
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from router.errors import StoreError

_PERMANENT_DBAPI = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    sa_exc.ProgrammingError,
    sa_exc.NotSupportedError,
)


def is_retriable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, _PERMANENT_DBAPI):
            return False
        # OperationalError (locks, timeouts, connection loss, deadlocks),
        # InterfaceError, InternalError and plain DatabaseError
        return True
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(error, OSError | ConnectionError):
        return True
    # ArgumentError, CompileError, InvalidRequestError, ...: a bug, not bad weather
    return False


def wrap(error: BaseException, what: str = "store") -> StoreError:
    """The `StoreError` for `error`; raise it `from error`."""
    retriable = is_retriable(error)
    detail = _describe(error)
    return StoreError(f"{what}: {detail}", retriable=retriable)


def _describe(error: BaseException) -> str:
    if isinstance(error, sa_exc.DBAPIError):
        # The driver's own message, without SQLAlchemy's statement and parameters
        # (parameters may carry personal data).
        orig = error.orig
        name = type(orig).__name__
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else name
        return f"{name}: {text}"
    return f"{type(error).__name__}: {error}"
