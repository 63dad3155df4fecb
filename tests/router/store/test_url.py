"""Store URLs, and the SQLite specifics (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from router.errors import StoreError
from router.store import open_store
from router.store.url import parse


@pytest.mark.parametrize(
    ("raw", "backend", "driver", "database"),
    [
        ("sqlite:///var/omni.sqlite3", "sqlite", "sqlite+aiosqlite", "var/omni.sqlite3"),
        ("sqlite:////abs/path.db", "sqlite", "sqlite+aiosqlite", "/abs/path.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite", "sqlite+aiosqlite", "x.db"),
        ("postgresql://u:pw@db:5432/omni", "postgresql", "postgresql+psycopg", "omni"),
        ("postgres://u@db/omni", "postgresql", "postgresql+psycopg", "omni"),
        ("postgresql+psycopg://u@db/omni", "postgresql", "postgresql+psycopg", "omni"),
    ],
)
def test_urls_map_to_the_async_drivers(raw: str, backend: str, driver: str, database: str) -> None:
    parsed = parse(raw)
    assert parsed.backend == backend
    assert parsed.url.drivername == driver
    assert parsed.url.database == database


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://u:secret@db/omni",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://u:secret@db",
        "not a url",
    ],
)
def test_bad_urls_are_refused_without_leaking_the_password(raw: str) -> None:
    with pytest.raises(StoreError) as caught:
        parse(raw)
    assert caught.value.retriable is False
    assert "secret" not in str(caught.value)


def test_the_safe_url_hides_the_password() -> None:
    assert "secret" not in parse("postgresql://u:secret@db/omni").safe


async def test_sqlite_creates_its_directory_and_runs_in_wal_with_foreign_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep" / "er" / "omni.sqlite3"
    store = await open_store(f"sqlite:///{path}")
    try:
        assert path.is_file()
        async with store.transaction(readonly=True) as conn:
            assert await conn.scalar(sa.text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(sa.text("PRAGMA foreign_keys")) == 1
            assert await conn.scalar(sa.text("PRAGMA busy_timeout")) == 5000
    finally:
        await store.close()


async def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError) as caught:
        await open_store(f"sqlite:///{blocker}/sub/omni.sqlite3")
    assert caught.value.retriable is False


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'omni.sqlite3'}"
    store = await open_store(url)
    async with store.transaction() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    await store.close()
    with pytest.raises(StoreError, match="newer") as caught:
        await open_store(url)
    assert caught.value.retriable is False


async def test_an_unreachable_postgres_is_retriable_and_ping_is_false() -> None:
    store = await open_store("postgresql://nobody@127.0.0.1:1/omni", migrate=False)
    try:
        assert await store.ping() is False
        with pytest.raises(StoreError) as caught:
            await store.migrate()
        assert caught.value.retriable is True
    finally:
        await store.close()
