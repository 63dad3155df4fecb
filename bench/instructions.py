"""Instructions per routed message, counted by valgrind (callgrind): a figure the
machine's noise does not move, to compare two versions of the routing's CPU cost.

The routing engine alone (no Kafka) routes the end-to-end bench's traffic
(`bench/routing.py`: half new conversations, half follow-ups) on a fresh SQLite
store, in units of `--batch` records, as the router does under a backlog. The
process runs twice under callgrind, routing `--warm` messages and then
`--warm + --messages`: the difference, divided by `--messages`, is the count per
message, without the start (imports, migrations) the two runs share. The
baseline, measured the same way in the same run: one bare SQLite INSERT through
`sqlite3`, so the engine's figure also reads as that many bare statements.

Wall time under valgrind is about 50 times the usual; the four runs take 4-6
minutes, two at a time. Counts repeat within about 0.5% (ids and times differ).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_from(root: Path) -> None:
    """Import the router (and the end-to-end bench's traffic) from the checkout `root`."""
    sys.path[:0] = [str(root), str(root / "bench")]


def route(count: int, batch: int) -> None:
    """Route `count` messages of the end-to-end traffic through the engine, `batch` a unit."""
    from routing import bench_config, quiet_logs, traffic

    from router.bus.base import Topics
    from router.routing.engine import Engine
    from router.store import open_store

    def now() -> datetime:
        return datetime.now(UTC)

    async def run() -> None:
        quiet_logs()
        envelopes, _ = traffic(max(count, 1), 0.5, random.Random(5))
        with tempfile.TemporaryDirectory() as where:
            url = f"sqlite:///{where}/store.sqlite3"
            store = await open_store(url)
            try:
                # As the end-to-end bench routes: no connector runs, so no sink counts as reachable.
                engine = Engine(
                    bench_config(store=url), store, Topics(prefix="b."), reachability=False
                )
                await engine.start(now())
                done = 0
                while done < count:
                    done += len(await engine.handle_batch(envelopes[done : done + batch], now))
            finally:
                await store.close()

    asyncio.run(run())


def bare(count: int) -> None:
    """`count` bare INSERTs through sqlite3, in one transaction, after the same imports."""
    import routing  # noqa: F401  # the same start as `route`

    with tempfile.TemporaryDirectory() as where:
        db = sqlite3.connect(f"{where}/bare.sqlite3")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT, c TEXT)")
        for i in range(count):
            db.execute("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", (str(i), "x" * 40, "y"))
        db.commit()
        db.close()


def counted(kind: str, count: int, batch: int, root: Path) -> int:
    """Instructions callgrind counts for this script routing (or inserting) `count`."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        kind,
        "--batch",
        str(batch),
        "--root",
        str(root),
        str(count),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(found.group(1))


def per_item(kind: str, warm: int, more: int, batch: int, root: Path) -> float:
    with ThreadPoolExecutor(2) as pool:
        low, high = pool.map(lambda n: counted(kind, n, batch, root), (warm, warm + more))
    return (high - low) / more


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Instructions per routed message, counted by valgrind's callgrind,"
        " next to a bare SQLite INSERT (see bench/README.md)."
    )
    parser.add_argument("--messages", type=int, default=500, help="messages counted")
    parser.add_argument("--warm", type=int, default=300, help="messages routed before them")
    parser.add_argument("--batch", type=int, default=25, help="records per unit of work")
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose routing is counted (default: this one), e.g. a worktree"
        " of the version before, to compare",
    )
    parser.add_argument("--child", choices=["route", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("count", type=int, nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _import_from(args.root.resolve())
    if args.child == "route":
        route(args.count, args.batch)
        return 0
    if args.child == "bare":
        bare(args.count)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    statements = 20 * args.messages
    print(
        f"instructions counted by callgrind; {args.messages:,} messages after {args.warm:,},"
        f" units of {args.batch}; the routing of {args.root.resolve()};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    base = per_item("bare", 20 * args.warm, statements, args.batch, args.root)
    print(f"baseline: one bare SQLite INSERT through sqlite3      {base:>12,.0f}")
    routed = per_item("route", args.warm, args.messages, args.batch, args.root)
    print(
        f"one routed message (engine, SQLite store)            {routed:>12,.0f}"
        f"   = {routed / base:,.0f} bare INSERTs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
