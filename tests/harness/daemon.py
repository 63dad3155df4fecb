"""Running the daemon in tests: in this process (`running`), or as operators do, in its own
process with its log in a file (`DaemonProcess`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from router.config import Config
from router.consume import ConsumeLoop
from router.daemon import Daemon
from tests.harness.common import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]


def embedded_config(tmp: Path) -> str:
    """The head of a daemon config: embedded bus and SQLite store under `tmp`, HTTP on a
    free port. Tests add their `channels:`, `agents:` and other sections after it."""
    return f"""
version: 1
bus:
  backend: embedded
  embedded: {{path: "{tmp}/bus.sqlite3"}}
store:
  url: "sqlite:///{tmp}/store.sqlite3"
blobs: {{path: "{tmp}/blobs"}}
http: {{host: 127.0.0.1, port: 0}}
"""


@asynccontextmanager
async def running(
    config: Config, *, ready_within: float = 10.0, exits_with: int = 0, **kw: Any
) -> AsyncIterator[Daemon]:
    """The daemon running in this process until the block ends; it must then exit with
    `exits_with` (0: it stopped when asked; 1: something in the block made it fail)."""
    daemon = Daemon(config, **kw)
    task = asyncio.create_task(daemon.run(install_signals=False))

    def ready() -> bool:
        if task.done():  # it failed to start: raise why
            raise AssertionError(f"the daemon exited with {task.result()} before it was ready")
        return daemon._ready

    try:
        await eventually(ready, ready_within)
        yield daemon
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 15) == exits_with


def break_consume_loop(loop: ConsumeLoop, error: Exception) -> None:
    """Make a running consume loop's next fetch raise `error`: a bus failure it cannot
    ride out, which ends the loop."""
    consumer = loop._consumer
    assert consumer is not None, "the loop has not started"

    async def fetch(*_args: Any, **_kw: Any) -> Any:
        raise error

    consumer.fetch = fetch  # type: ignore[method-assign]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, status: int, seconds: float) -> float:
    """Poll until `url` answers `status`; return how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if get(url)[0] == status:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {seconds}s")


class DaemonProcess:
    def __init__(self, config: Path, cwd: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "daemon.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router.cli",
                "run",
                "-c",
                str(config),
                "--http",
                f"127.0.0.1:{self.port}",
                *extra,
            ],
            cwd=cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log_file.close()
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()

    def wait_for_log(self, text: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.output():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not in the daemon log:\n{self.output()[-4000:]}")
            time.sleep(0.1)
