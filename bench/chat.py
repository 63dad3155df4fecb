"""Web chat: idle sockets one daemon process holds, and a visitor message's round trip.

    python bench/chat.py [--sockets 10000] [--rates 200,1000] [--seconds 5]

Each server runs in its own process (so its RSS is its own) on 127.0.0.1:

- webchat: `WebchatConnector` on an aiohttp application, its intake run by the
  real `ChannelRunner` into an `EmbeddedBus` on a temp file (WAL,
  synchronous=FULL), sessions in memory checkpoints.
- echo (baseline): a bare aiohttp WebSocket server that sends every frame back.

Idle sockets: `--sockets` clients connect (a widget's `hello` on the web chat,
one frame on echo) and stay open; the server's RSS before and after gives the
bytes per socket (the target: 10,000 sockets under 1 GiB).

Round trip: `--sessions` sockets send messages at the offered rate (open loop:
on schedule, whatever the answers) for `--seconds`; each is timed from its send
to its `state: sent` (durably on the bus, the runner's ack) on the web chat, to
its echo on the baseline. p50 and p99 in milliseconds, and how many answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

KEY = "bench-session-key-0123456789"
ORIGIN = "http://bench.test"
LABELS = {"webchat": "webchat", "echo": "echo (baseline)"}


# --- the servers (each in its own process) ------------------------------------------------


async def serve_webchat(port: int, bus_path: Path) -> None:
    import structlog

    from connectors.webchat.config import WebchatChannelConfig
    from connectors.webchat.connector import WebchatConnector
    from router.blobs import BlobStore
    from router.bus import EmbeddedBus
    from router.bus.base import Topics
    from router.channels import ChannelRunner
    from router.connector import Services
    from router.connector.testing import MemoryCheckpoints
    from router.http import Routes
    from router.metrics import Metrics

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    app = web.Application()
    cfg = WebchatChannelConfig.model_validate(
        {
            "session_key": KEY,
            "allowed_origins": [ORIGIN],
            "messages_per_minute": 1_000_000,
            "sessions_per_hour": 1_000_000,
            "heartbeat": "10m",
        }
    )
    blobs = BlobStore(bus_path.parent / "blobs")
    services = Services(blobs=blobs, checkpoints=MemoryCheckpoints(), http=Routes(app))
    connector = WebchatConnector("web", cfg, services)
    bus = EmbeddedBus(bus_path, partitions=4)
    await bus.start()
    runner = ChannelRunner(
        name="web", connector=connector, bus=bus, topics=Topics(prefix="omni."), metrics=Metrics()
    )
    runner.start_intake()
    await _listen(app, port)


async def serve_echo(port: int) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/chat", echo)
    await _listen(app, port)


async def _listen(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- the client side ------------------------------------------------------------------------


class Server:
    def __init__(self, kind: str, tmp: Path) -> None:
        from tests.harness.common import free_port

        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/chat"
        args = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        args += ["--bus", str(tmp / f"{kind}-bus.sqlite3")]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the {kind} server did not start")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def open_socket(
    http: aiohttp.ClientSession, server: Server
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(server.url, headers={"Origin": ORIGIN}, autoping=True)
    if server.kind == "webchat":
        await ws.send_str('{"t":"hello","session":null,"last":0}')
    else:
        await ws.send_str('{"t":"hello"}')
    await ws.receive()  # the welcome (or the echo): the socket is set up on both sides
    return ws


async def idle(server: Server, count: int) -> tuple[int, float]:
    """Sockets held and RSS bytes per socket."""
    before = server.rss()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        batch = 200
        for start in range(0, count, batch):
            n = min(batch, count - start)
            sockets += await asyncio.gather(*(open_socket(http, server) for _ in range(n)))
        await asyncio.sleep(1.0)  # let the server settle before reading its RSS
        after = server.rss()
        await asyncio.gather(*(ws.close() for ws in sockets))
    return len(sockets), (after - before) / max(len(sockets), 1)


async def round_trip(server: Server, rate: int, seconds: float, sessions: int) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=0)
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    all_answered = asyncio.Event()
    async with aiohttp.ClientSession(connector=conn) as http:
        sockets = await asyncio.gather(*(open_socket(http, server) for _ in range(sessions)))

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                frame = orjson.loads(msg.data)
                if server.kind == "webchat" and frame.get("t") != "state":
                    continue
                at = sent_at.pop(frame["cid"], None)
                if at is not None:
                    latencies.append(time.perf_counter() - at)
                    if not sent_at and sending_done:
                        all_answered.set()

        sending_done = False
        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            cid = f"m{i}"
            sent_at[cid] = time.perf_counter()
            frame = orjson.dumps({"t": "msg", "cid": cid, "text": "where is my order?"})
            await sockets[i % sessions].send_str(frame.decode())
        sending_done = True
        if sent_at:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_answered.wait(), 15)
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "answered": f"{len(ms)}/{total}",
        "p50": statistics.median(ms) if ms else float("nan"),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan"),
    }


async def main(args: argparse.Namespace) -> None:
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"load average: {os.getloadavg()[0]:.2f}; {args.sockets} idle sockets")
        print(f"{'server':<16}{'sockets':>9}{'RSS/socket':>12}{'for 10,000':>12}")
        for kind in ("webchat", "echo"):
            server = Server(kind, Path(tmp))
            try:
                held, per = await idle(server, args.sockets)
                per_10k = per * 10_000 / 2**20
                print(f"{LABELS[kind]:<16}{held:>9}{per / 1024:>9.1f} KiB{per_10k:>8.0f} MiB")
            finally:
                server.stop()
        print(f"\nround trip ({args.sessions} sockets, {args.seconds:g} s per rate)")
        print(f"{'server':<16}{'offered/s':>10}{'answered':>14}{'p50 ms':>9}{'p99 ms':>9}")
        for kind in ("webchat", "echo"):
            server = Server(kind, Path(tmp))
            try:
                for rate in rates:
                    r = await round_trip(server, rate, args.seconds, args.sessions)
                    print(
                        f"{LABELS[kind]:<16}{rate:>10}{r['answered']:>14}{r['p50']:>9.1f}{r['p99']:>9.1f}"
                    )
            finally:
                server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--serve", choices=["webchat", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "webchat":
        asyncio.run(serve_webchat(args.port, args.bus))
    elif args.serve == "echo":
        asyncio.run(serve_echo(args.port))
    else:
        asyncio.run(main(args))
