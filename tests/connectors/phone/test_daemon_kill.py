"""The CDR file through the daemon in its own process, SIGKILLed at random points.

The PBX keeps appending (sometimes half a line), the file is rotated once, and
the daemon is killed while it tails and routes. At the end every call is in
the store exactly once, and the bus carried each at least once: the only
repeats are lines a kill came before the checkpoint of (at most `MAX_UNWRITTEN`
and one more per kill; same envelope id, dropped by the router).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import orjson

from connectors.phone.client import MAX_UNWRITTEN
from router.envelope import envelope_id
from tests.connectors.phone.helpers import cdr_line
from tests.harness.daemon import DaemonProcess, embedded_config, wait_for

CHANNEL = "line"
LINES = 80  # more than the killed rounds write: each of them has new lines to take
ROUNDS = 4  # killed runs before the last, clean one


def config(tmp: Path) -> Path:
    path = tmp / "channels.yaml"
    path.write_text(
        embedded_config(tmp)
        + f"""
channels:
  - name: {CHANNEL}
    type: phone
    phone:
      webhook_path: null
      default_region: ES
      timezone: Europe/Madrid
      cdr: {{path: "{tmp}/Master.csv"}}
""",
        encoding="utf-8",
    )
    return path


def line(n: int) -> str:
    # A different caller each time: every call opens its own conversation.
    return cdr_line(
        src=f"6001{n:05d}", clid="", disposition="NO ANSWER", uniqueid=f"1741597200.{n}"
    )


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def stored_calls(tmp: Path) -> int:
    if not (tmp / "store.sqlite3").exists():
        return 0
    try:
        return int(
            query(tmp / "store.sqlite3", "SELECT count(*) FROM messages WHERE kind='call'")[0][0]
        )
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def test_every_call_once_across_sigkills(tmp_path: Path) -> None:
    rng = random.Random(12)
    cfg = config(tmp_path)
    master = tmp_path / "Master.csv"
    written, half = 0, ""

    def pbx_writes(n: int) -> None:
        nonlocal written, half
        with master.open("a", encoding="utf-8") as f:
            batch = [line(i) for i in range(written, min(written + n, LINES))]
            if batch:
                f.write(batch[0][len(half) :] + "\n" + "".join(x + "\n" for x in batch[1:]))
                written += len(batch)
                half = ""
            if written < LINES and rng.random() < 0.5:
                half = line(written)[: rng.randint(1, 40)]
                f.write(half)

    pbx_writes(10)
    for round_ in range(ROUNDS):
        d = DaemonProcess(cfg, tmp_path)
        try:
            wait_for(d.base + "/readyz", 200, 30)
            pbx_writes(rng.randint(5, 15))
            if round_ == 1 and not half:
                master.rename(tmp_path / "Master.csv.1")  # rotation; the PBX reopens the path
            # Killed while busy: after some calls are in, at a random moment.
            before = stored_calls(tmp_path)
            deadline = time.monotonic() + 30
            while stored_calls(tmp_path) <= before and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
        finally:
            d.proc.send_signal(signal.SIGKILL)
            d.kill()
    d = DaemonProcess(cfg, tmp_path)
    try:
        wait_for(d.base + "/readyz", 200, 30)
        while written < LINES or half:
            pbx_writes(LINES)
        deadline = time.monotonic() + 60
        while stored_calls(tmp_path) < LINES and time.monotonic() < deadline:
            time.sleep(0.05)
        code, _ = d.stop(signal.SIGTERM)
        assert code == 0, d.output()[-3000:]
    finally:
        d.kill()

    expected = {envelope_id(CHANNEL, f"1741597200.{n}") for n in range(LINES)}
    store = tmp_path / "store.sqlite3"
    calls = [r[0] for r in query(store, "SELECT id FROM messages WHERE kind='call'")]
    assert sorted(calls) == sorted(expected)
    conversations = query(store, f"SELECT count(*) FROM conversations WHERE channel='{CHANNEL}'")
    assert conversations[0][0] == LINES
    on_bus = Counter(
        orjson.loads(value)["id"]
        for (value,) in query(
            tmp_path / "bus.sqlite3", "SELECT value FROM bus_records WHERE topic='omni.inbound'"
        )
        if orjson.loads(value)["kind"] == "call"
    )
    assert set(on_bus) == expected
    repeats = sum(on_bus.values()) - LINES
    # Per kill: the line on its way to the bus and those acked but not yet checkpointed.
    assert repeats <= ROUNDS * (MAX_UNWRITTEN + 1), on_bus.most_common(5)
