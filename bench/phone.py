"""CDR lines/s: tailed, normalized and put on the bus, next to a bare csv parse.

Prints, from the same run and the same generated Master.csv (Asterisk layout,
a mix of answered, missed, abandoned and outbound calls):
- lines/s through `csv.reader` alone (the baseline: what reading the file costs);
- lines/s through the connector's mapping alone (`Reader.split` + `Reader.cdr`:
  E.164, time zone, disposition, the envelope);
- lines/s end to end: the phone connector tailing the file, run by the real
  channel runner onto the embedded bus (SQLite), each line's position
  checkpointed in the store (SQLite) once it is on the bus, as the daemon runs it.

Run: python bench/phone.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.phone.client import CHECKPOINT_KEY, Position  # noqa: E402
from connectors.phone.connector import PhoneConnector  # noqa: E402
from connectors.phone.inbound import Reader  # noqa: E402
from router.blobs import BlobStore  # noqa: E402
from router.bus import EmbeddedBus  # noqa: E402
from router.bus.base import Topics  # noqa: E402
from router.channels import ChannelRunner  # noqa: E402
from router.connector import Services  # noqa: E402
from router.connector.testing import MemoryCheckpoints  # noqa: E402
from router.envelope import now_utc  # noqa: E402
from router.metrics import Metrics  # noqa: E402
from router.store import open_store  # noqa: E402
from tests.connectors.phone.helpers import CHANNEL, cdr_line, phone_config  # noqa: E402

KINDS = [
    {},
    {"disposition": "NO ANSWER", "billsec": "0", "answer": "", "dstchannel": ""},
    {"disposition": "NO ANSWER", "lastapp": "Queue", "billsec": "0", "answer": ""},
    {"src": "201", "dst": "611223344", "channel": "PJSIP/201-1", "dstchannel": "PJSIP/t-2"},
]


def write_file(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        for n in range(lines):
            kind = KINDS[n % len(KINDS)]
            src = kind.get("src", f"6001{n % 100000:05d}")
            f.write(cdr_line(**{**kind, "src": src, "uniqueid": f"1741597200.{n}"}) + "\n")


def bare_csv(path: Path) -> float:
    start = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as f:
        rows = sum(1 for _ in csv.reader(f))
    return rows / (time.perf_counter() - start)


def mapping(path: Path, reader: Reader) -> float:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = time.perf_counter()
    now = now_utc()
    for line in lines:
        reader.cdr(reader.split(line), now)
    return len(lines) / (time.perf_counter() - start)


async def end_to_end(
    path: Path, size: int, tmp: Path, lines: int, *, in_memory: bool = False
) -> float:
    """Lines/s until the checkpoint reaches the end of the file; `in_memory`: checkpoints
    kept in memory (what the store's checkpoint writes cost, by difference)."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))
    store = await open_store(f"sqlite:///{tmp / 'store.sqlite3'}")
    checkpoints = MemoryCheckpoints() if in_memory else store
    bus = EmbeddedBus(tmp / "bus.sqlite3", partitions=1)
    await bus.start()
    cfg = phone_config(
        webhook_path=None, cdr={"path": path, "poll_interval": timedelta(milliseconds=20)}
    )
    connector = PhoneConnector(
        CHANNEL, cfg, Services(blobs=BlobStore(tmp / "blobs"), checkpoints=checkpoints)
    )
    runner = ChannelRunner(
        name=CHANNEL, connector=connector, bus=bus, topics=Topics(prefix="omni."), metrics=Metrics()
    )
    start = time.perf_counter()
    runner.start_intake()
    try:
        while True:
            text = await checkpoints.get_checkpoint(CHANNEL, CHECKPOINT_KEY)
            position = Position.decode(text) if text else None
            if position is not None and position.offset >= size:
                break
            await asyncio.sleep(0.05)
        return lines / (time.perf_counter() - start)
    finally:
        await runner.stop_intake()
        await bus.stop()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-phone-") as tmp_dir:
        tmp = Path(tmp_dir)
        path = tmp / "Master.csv"
        write_file(path, args.lines)
        size = path.stat().st_size
        reader = Reader.of(CHANNEL, phone_config())
        rows = [
            ("csv.reader alone (baseline)", bare_csv(path)),
            ("mapping: CSV row -> call envelope", mapping(path, reader)),
            (
                "end to end: tail -> embedded bus, checkpointed",
                asyncio.run(end_to_end(path, size, tmp, args.lines)),
            ),
            (
                "  the same, checkpoints in memory",
                asyncio.run(end_to_end(path, size, tmp, args.lines, in_memory=True)),
            ),
        ]
    print(f"{args.lines} CDR lines ({size:,} bytes)")
    for name, per_second in rows:
        print(f"  {name:<48} {per_second:>12,.0f} lines/s")


if __name__ == "__main__":
    main()
