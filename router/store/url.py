"""Store URLs: what the operator writes, and the drivers we use for it.

    sqlite:///var/omnirouter.sqlite3      relative to the working directory
    sqlite:////var/lib/omnirouter/db      absolute path
    postgresql://user:pw@host:5432/db     (also postgres://, postgresql+psycopg://)

SQLite runs on aiosqlite, PostgreSQL on psycopg 3 (its async mode); the store's
writer thread uses the same drivers' synchronous modes (`sync_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from router.errors import StoreError

Backend = Literal["sqlite", "postgresql"]

_SQLITE = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg_async"}


@dataclass(frozen=True, slots=True)
class StoreURL:
    backend: Backend
    url: URL  # with the async driver

    @property
    def sync_url(self) -> URL:
        """The same database through the synchronous driver (the store's writer thread)."""
        driver = "sqlite+pysqlite" if self.backend == "sqlite" else "postgresql+psycopg"
        return self.url.set(drivername=driver)

    @property
    def safe(self) -> str:
        """The URL with its password hidden, for logs and errors."""
        return self.url.render_as_string(hide_password=True)

    @property
    def sqlite_path(self) -> Path | None:
        if self.backend != "sqlite" or self.url.database is None:
            return None
        return Path(self.url.database)


def parse(raw: str) -> StoreURL:
    """Map an operator's store URL to the async driver; refuse anything else."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise StoreError(f"store url: cannot parse {_redact(raw)!r}", retriable=False) from exc
    name = url.drivername
    if name in _SQLITE:
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise StoreError(
                f"store url {url.render_as_string(hide_password=True)!r}: SQLite needs a file "
                "path (sqlite:///relative/path.db or sqlite:////absolute/path.db); "
                "in-memory databases cannot be shared between connections",
                retriable=False,
            )
        return StoreURL("sqlite", url.set(drivername="sqlite+aiosqlite"))
    if name in _POSTGRES:
        if not url.database:
            raise StoreError(
                f"store url {url.render_as_string(hide_password=True)!r}: name the database "
                "(postgresql://user:password@host:5432/omnirouter)",
                retriable=False,
            )
        return StoreURL("postgresql", url.set(drivername="postgresql+psycopg"))
    raise StoreError(
        f"store url {url.render_as_string(hide_password=True)!r}: unsupported scheme {name!r} "
        "(use sqlite:///path or postgresql://user:password@host/db)",
        retriable=False,
    )


def _redact(raw: str) -> str:
    # An unparseable URL may still carry a password: drop anything before '@'.
    scheme, sep, rest = raw.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return raw
