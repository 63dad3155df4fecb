"""Telegram: inbound updates/s to the bus, outbound sends/s through the pacing.

Prints, from the same run, against the fake Bot API (tests/harness/telegram.py)
on 127.0.0.1:
- inbound: updates/s through `connectors.telegram.inbound` (read + envelope +
  `encode`, the bytes the bus takes), next to a bare `orjson.loads` of the same
  update bodies (the baseline); and updates/s end to end: the connector long
  polling the fake, run by the real `ChannelRunner` onto the embedded bus;
- outbound: sends/s through the connector with Telegram's pacing (about 30/s in
  all, 1/s per chat) across many chats, next to a bare python-telegram-bot
  `send_message` loop (its default transport, no pacing) and the connector with
  the pacing switched off (what the pacing itself costs).

Run: python bench/telegram_bot.py [--updates 5000] [--sends 150] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on the path and its name would
# shadow the `telegram` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot  # noqa: E402

from connectors.telegram import inbound  # noqa: E402
from connectors.telegram.client import Pacer  # noqa: E402
from router.bus import EmbeddedBus  # noqa: E402
from router.bus.base import Topics  # noqa: E402
from router.channels import ChannelRunner  # noqa: E402
from router.envelope import encode, now_utc  # noqa: E402
from router.metrics import Metrics  # noqa: E402
from tests.connectors.telegram.helpers import reply, wired  # noqa: E402
from tests.harness.telegram import FakeBotApi, fake_bot_api, message  # noqa: E402

TOPICS = Topics(prefix="omni.")


def bodies(api: FakeBotApi, n: int) -> list[bytes]:
    return [
        orjson.dumps({"update_id": i, **message(api, 1000 + i % 500, f"message {i} " * 8)})
        for i in range(n)
    ]


def rate(fn, items: list[bytes], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for raw in items:
            fn(raw)
        done += len(items)
    return done / (time.perf_counter() - start)


def normalize(raw: bytes) -> bytes:
    read = inbound.read(orjson.loads(raw))
    assert isinstance(read, inbound.Message)
    env = inbound.customer_envelope("tg", read, files=inbound.Files(), received_at=now_utc())
    return encode(env)


async def end_to_end(api: FakeBotApi, tmp: Path, n: int) -> float:
    """Updates/s from the fake's queue to the embedded bus, through polling and the runner."""
    async with wired(api, tmp) as w:
        bus = EmbeddedBus(tmp / "bus.sqlite3", partitions=4)
        await bus.start()
        runner = ChannelRunner(
            name="tg", connector=w.connector, bus=bus, topics=TOPICS, metrics=Metrics()
        )
        for i in range(n):
            api.add_update(message(api, 1000 + i % 500, f"message {i}"))
        last = api.updates[-1]["update_id"]
        start = time.perf_counter()
        runner.start_intake()
        try:
            # the end is the offset kept past the last update: a 10 ms poll of the checkpoint
            while int(await w.checkpoints.get_checkpoint("tg", "offset") or 0) <= last:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - start
        finally:
            await runner.stop_intake()
            await bus.stop()
    return n / elapsed


async def sends(api: FakeBotApi, tmp: Path, n: int, chats: int, pacer: Pacer) -> float:
    async with wired(api, tmp, pacer=pacer) as w:
        await w.connector.start()
        start = time.perf_counter()
        for i in range(n):
            result = await w.connector.send(reply(1 + i % chats, f"reply {i}", n=i))
            assert result.status == "sent", result
        return n / (time.perf_counter() - start)


def check(api: FakeBotApi, n: int, chats: int, pacer: Pacer) -> str:
    """Whether every reply arrived, in order per chat, never closer than the pacing allows."""
    by_chat: dict[int, list[float]] = {}
    texts: dict[int, list[str]] = {}
    for s in api.sent:
        by_chat.setdefault(s.chat_id, []).append(s.at)
        texts.setdefault(s.chat_id, []).append(s.text)
    in_order = all(
        [int(t.split()[1]) for t in ts] == sorted(int(t.split()[1]) for t in ts)
        for ts in texts.values()
    )
    gap = min((b - a for ats in by_chat.values() for a, b in itertools.pairwise(ats)), default=0.0)
    times = [s.at for s in api.sent]
    limit, window = pacer.overall
    busiest = max(
        (sum(1 for t in times[i:] if t - times[i] < window) for i in range(0, len(times), 7)),
        default=0,
    )
    return (
        f"{len(api.sent)}/{n} arrived, in order per chat: {in_order}, 429s met:"
        f" {len(api.refused)}, closest per chat {gap:.3f} s (limit {pacer.per_chat}),"
        f" busiest second {busiest} (limit {limit})"
    )


async def bare_ptb(api: FakeBotApi, n: int, chats: int) -> float:
    async with Bot(api.token, base_url=api.base_url) as bot:
        start = time.perf_counter()
        for i in range(n):
            await bot.send_message(1 + i % chats, f"reply {i}")
        return n / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--sends", type=int, default=150)
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--faults", type=int, default=20, help="chats given a 429 (1 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with fake_bot_api() as api:
            raw = bodies(api, 500)
            print(f"load average: {os.getloadavg()[0]:.2f}")
            print("inbound (updates/s)")
            bare = rate(orjson.loads, raw, args.seconds)
            print(f"  bare orjson.loads                 {bare:>10,.0f}")
            print(
                f"  read + envelope + encode          {rate(normalize, raw, args.seconds):>10,.0f}"
            )
        async with fake_bot_api() as api:
            e2e = await end_to_end(api, tmp / "e2e", args.updates)
            print(f"  polling → runner → embedded bus   {e2e:>10,.0f}   ({args.updates} updates)")
        print(f"outbound (sends/s, {args.sends} replies over {min(args.chats, args.sends)} chats)")
        async with fake_bot_api() as api:
            bare = await bare_ptb(api, args.sends, args.chats)
            print(f"  bare python-telegram-bot loop     {bare:>10,.1f}")
        async with fake_bot_api() as api:
            free = Pacer(per_chat=0.0, overall=(1, 0.0))
            unpaced = await sends(api, tmp / "free", args.sends, args.chats, free)
            print(f"  connector, pacing off             {unpaced:>10,.1f}")
        async with fake_bot_api() as api:
            for chat in range(
                1, min(args.chats, args.sends) + 1, max(1, args.chats // args.faults)
            ):
                api.fail("sendMessage", "429", chat_id=chat, retry_after=1)
            pacer = Pacer()
            paced = await sends(api, tmp / "paced", args.sends, args.chats, pacer)
            print(
                f"  connector, Telegram's pacing      {paced:>10,.1f}   (at most 30 in any second)"
            )
            print(f"    under injected 429s: {check(api, args.sends, args.chats, pacer)}")


if __name__ == "__main__":
    asyncio.run(main())
