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

`--traffic new` counts first messages only (each opens a conversation);
`--traffic follow-ups` counts follow-ups only, on `--warm + --messages`
conversations both runs open first. `--by-library` also says where a message's
instructions ran, by the shared object that ran them (callgrind's own cost of
each function, summed by its object): the Python interpreter (our code,
SQLAlchemy's and the standard library's Python), SQLite with its `sqlite3`
module, pydantic-core, fasttext, orjson, the C and C++ libraries, and the
other compiled modules.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _import_from(root: Path) -> None:
    """Import the router (and the end-to-end bench's traffic) from the checkout `root`."""
    sys.path[:0] = [str(root), str(root / "bench")]


TRAFFIC = ("mixed", "new", "follow-ups")


def messages(kind: str, count: int, opened: int) -> list[Any]:
    """What a run routes: `count` messages of the end-to-end traffic (`mixed`), `count`
    first messages (`new`), or `opened` first messages and then `count` follow-ups on
    those conversations (`follow-ups`)."""
    from routing import follow_up, opening, traffic

    if kind == "mixed":
        return traffic(max(count, 1), 0.5, random.Random(5))[0]
    if kind == "new":
        return [opening(k, k)[1] for k in range(count)]
    threads, firsts = zip(*(opening(k, k) for k in range(opened)), strict=True)
    rng = random.Random(5)
    return [*firsts, *(follow_up(rng.choice(threads), opened + i) for i in range(count))]


def route(envelopes: list[Any], batch: int) -> None:
    """Route `envelopes` through the engine, `batch` a unit."""
    from routing import bench_config, quiet_logs

    from router.bus.base import Topics
    from router.routing.engine import Engine
    from router.store import open_store

    def now() -> datetime:
        return datetime.now(UTC)

    async def run() -> None:
        quiet_logs()
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
                while done < len(envelopes):
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


@dataclass
class Counted:
    """What callgrind counted for one run: all instructions, and (with `by_library`)
    each function's own instructions summed by the group of its shared object."""

    total: int
    by_library: dict[str, int]


def counted(kind: str, count: int, args: argparse.Namespace) -> Counted:
    """Instructions callgrind counts for this script routing (or inserting) `count`."""
    with tempfile.TemporaryDirectory() as where:
        split = args.by_library and kind == "route"
        out = f"{where}/callgrind.out" if split else "/dev/null"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            kind,
            "--traffic",
            args.traffic,
            "--opened",
            str(args.warm + args.messages),
            "--batch",
            str(args.batch),
            "--root",
            str(args.root),
            str(count),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
        total = int(found.group(1))
        return Counted(total, by_library(Path(out), total) if split else {})


# The groups `--by-library` reports, by what their shared objects' paths contain (the
# first that matches); anything else is "other compiled modules".
LIBRARIES = (
    ("Python interpreter", ("/bin/python", "/libpython")),
    ("SQLite and sqlite3", ("libsqlite3", "/_sqlite3.")),
    ("pydantic-core", ("pydantic_core",)),
    ("fasttext", ("fasttext",)),
    ("orjson", ("orjson",)),
    (
        "C and C++ libraries",
        ("/libc.", "/libm.", "/ld-linux", "/libstdc++", "/libgcc_s", "/libpthread", "vgpreload"),
    ),
)
OTHER = "other compiled modules"


def library(path: str) -> str:
    for name, marks in LIBRARIES:
        if any(mark in path for mark in marks):
            return name
    return OTHER


def by_library(out: Path, total: int) -> dict[str, int]:
    """Each function's own instructions in a callgrind output file, summed by library.

    In the format, `ob=` names the object of the cost lines that follow (its path given
    once, then its number), and the cost line after `calls=` is the call's inclusive
    cost, already counted in the callee: it is skipped."""
    names: dict[str, str] = {}
    costs: dict[str, int] = {}
    current = "???"
    after_call = False
    with out.open() as lines:
        for line in lines:
            head = line[:1]
            if head.isdigit() or head in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) > 1:
                    group = library(current)
                    costs[group] = costs.get(group, 0) + int(parts[1])
            elif line.startswith(("ob=", "cob=")):
                spec = line.split("=", 1)[1].strip()
                number, _, path = spec.partition(" ")
                if path:
                    names[number] = path
                if line.startswith("ob="):
                    current = names.get(number, number) if number.startswith("(") else spec
            elif line.startswith("calls="):
                after_call = True
    if sum(costs.values()) != total:  # a misread file: say so rather than print wrong shares
        raise SystemExit(
            f"{out}: {sum(costs.values()):,} instructions by library, {total:,} in all"
        )
    return costs


def per_item(kind: str, warm: int, more: int, args: argparse.Namespace) -> Counted:
    with ThreadPoolExecutor(2) as pool:
        low, high = pool.map(lambda n: counted(kind, n, args), (warm, warm + more))
    groups = {
        name: (high.by_library.get(name, 0) - low.by_library.get(name, 0)) / more
        for name in {*low.by_library, *high.by_library}
    }
    return Counted(round((high.total - low.total) / more), {k: round(v) for k, v in groups.items()})


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
    parser.add_argument(
        "--traffic",
        choices=TRAFFIC,
        default="mixed",
        help="what is counted: the end-to-end traffic (default), first messages only, or"
        " follow-ups only",
    )
    parser.add_argument(
        "--by-library",
        action="store_true",
        help="also say where a routed message's instructions ran, by library",
    )
    parser.add_argument("--child", choices=["route", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--opened", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("count", type=int, nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _import_from(args.root.resolve())
    if args.child == "route":
        route(messages(args.traffic, args.count, args.opened), args.batch)
        return 0
    if args.child == "bare":
        bare(args.count)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    statements = 20 * args.messages
    counting = {
        "mixed": "messages of the end-to-end traffic",
        "new": "first messages (new conversations)",
        "follow-ups": f"follow-ups (on {args.warm + args.messages:,} conversations opened first)",
    }[args.traffic]
    print(
        f"instructions counted by callgrind; {args.messages:,} {counting} after {args.warm:,},"
        f" units of {args.batch}; the routing of {args.root.resolve()};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    base = per_item("bare", 20 * args.warm, statements, args).total
    print(f"baseline: one bare SQLite INSERT through sqlite3      {base:>12,}")
    routed = per_item("route", args.warm, args.messages, args)
    print(
        f"one routed message (engine, SQLite store)            {routed.total:>12,}"
        f"   = {routed.total / base:,.0f} bare INSERTs"
    )
    if args.by_library:
        print("  of which, by the library that ran them (each function's own instructions):")
        for name, count in sorted(routed.by_library.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<28} {count:>12,}  {100 * count / routed.total:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
