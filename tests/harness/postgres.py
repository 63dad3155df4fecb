"""PostgreSQL harness: a throwaway cluster for the test session.

Fixtures:
- `postgres_url` (session): a `postgresql://` URL for a database on a real
  server. The server is a fresh cluster in a temp dir on a free 127.0.0.1
  port (initdb, trust auth, fsync off; `_start_cluster(durable=True)` for benchmarks keeps
  fsync and synchronous_commit on), stopped and removed at the end. Set
  `OMNIROUTER_TEST_POSTGRES=postgresql://user:pw@host:port/db` to use an
  existing server instead (the user needs CREATEDB).
- `fresh_postgres_url` (function): a new, empty database on that server for
  one test, dropped afterwards, so tests never see each other's rows.

The binaries are found through `PG_BIN`, `pg_config --bindir`,
/usr/lib/postgresql/<version>/bin or PATH. When they are missing, tests that
need them fail with a message saying how to provide them; they are never
skipped silently. Locally, `-m "not postgres"` deselects them. Under CI
(`CI=true`) a skipped `postgres` test is turned into a failure.

PostgreSQL refuses to run as root: as root, the cluster runs as the system
user `omnitest` (created with `useradd -r -M` if missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.harness.common import free_port

ENV_URL = "OMNIROUTER_TEST_POSTGRES"
RUN_AS = "omnitest"
START_TIMEOUT = 60.0


# --- finding and running the binaries ---------------------------------------------------


def _bindir() -> Path | None:
    candidates: list[str] = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> int:
        try:
            return int(Path(path).parent.name.split(".")[0])
        except ValueError:
            return 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    return None


def _run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.fail(f"running as root and no user {RUN_AS!r}; create one (PostgreSQL refuses root)")
    subprocess.run(
        [useradd, "-r", "-M", "-s", "/usr/sbin/nologin", RUN_AS], check=True, capture_output=True
    )
    return pwd.getpwnam(RUN_AS)


@dataclass
class _Cluster:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _durability(durable: bool) -> list[str]:
    """Server settings: tests trade crash safety for speed; `durable` keeps PostgreSQL's
    defaults (every commit flushed to disk), like the SQLite store's synchronous=FULL, so a
    benchmark compares like with like."""
    value = "on" if durable else "off"
    settings = ("fsync", "synchronous_commit", "full_page_writes")
    return [arg for name in settings for arg in ("-c", f"{name}={value}")]


def _start_cluster(*, durable: bool = False) -> _Cluster:
    bindir = _bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, postgres) not found: install them "
            "(Debian: apt-get install postgresql), point PG_BIN at their directory, or set "
            f"{ENV_URL}=postgresql://user:pw@host:port/db to use a running server. "
            'To leave these tests out locally, run pytest -m "not postgres".'
        )
    user = _run_as_user()
    root = Path(tempfile.mkdtemp(prefix="omnirouter-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "postgres.log"
    sockets.mkdir()
    as_user: dict[str, object] = {}
    if user is not None:
        for p in (root, sockets):
            os.chown(p, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    init = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        env=env,
        cwd=root,
        check=False,
        **as_user,  # type: ignore[call-overload]
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}):\n{init.stderr.decode(errors='replace')}")

    port = free_port()
    with open(log, "wb") as log_file:
        if user is not None:
            os.chown(log, user.pw_uid, user.pw_gid)
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(sockets),
                *_durability(durable),
                "-c",
                "max_connections=200",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            **as_user,  # type: ignore[call-overload]
        )
    cluster = _Cluster(root=root, port=port, process=process, log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = _log_tail(log)
            cluster.stop()
            pytest.fail(f"postgres exited with {process.returncode}:\n{tail}")
        try:
            with psycopg.connect(cluster.url, connect_timeout=2):
                return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                tail = _log_tail(log)
                cluster.stop()
                pytest.fail(f"postgres did not accept connections in {START_TIMEOUT}s:\n{tail}")
            time.sleep(0.1)


# --- databases --------------------------------------------------------------------------


def _libpq(url: str) -> str:
    """A URL psycopg accepts (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _create_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if conn.info.server_version >= 150000:
            # copies the template's files instead of WAL-logging them: ~8x faster
            create = sql.SQL("{} STRATEGY FILE_COPY").format(create)
        conn.execute(create)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    assert name is not None
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of the session's PostgreSQL server (can CREATE DATABASE)."""
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    cluster = _start_cluster()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database for the whole session (shared by the tests that use it)."""
    url = _create_database(postgres_server, "omni_session")
    try:
        yield url
    finally:
        _drop_database(postgres_server, url)


@pytest.fixture
def fresh_postgres_url(postgres_server: str) -> Iterator[str]:
    """A new empty database for one test, dropped after it."""
    url = _create_database(postgres_server, "omni_test")
    try:
        yield url
    finally:
        _drop_database(postgres_server, url)


# --- CI: postgres tests must run --------------------------------------------------------
