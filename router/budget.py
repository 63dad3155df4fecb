"""A CPU budget for parsers fed from outside: one input, at most so much CPU.

The standard library's parsers have quadratic corners (the email header
parser, `html.parser`) that a thread cannot interrupt, so `Budget.call` runs
a pure, picklable function in a worker process and gets its result back:

- the worker arms `ITIMER_PROF` (the process's CPU time, user and system) for
  each call; when it fires, the call is abandoned with `BudgetExceeded` and
  the worker stays in use for the next one;
- a loop in C that never returns to the interpreter cannot see that signal:
  `RLIMIT_CPU`, set a grace second above the budget, makes the kernel kill
  the worker, and a wall-clock deadline in the caller (`wall_seconds`, much
  longer than the budget: a busy machine starves workers of CPU) kills it
  too. Either way the call raises `BudgetExceeded` and the next call starts a
  new worker.

`BudgetExceeded` is never retriable: the same input would exceed it again,
so it is dead-lettered with the reason. Any other exception the function
raises comes back as itself. Calls are serialized (one worker per budget);
`close()` stops the worker, and a later call starts a new one.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import pickle
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, TypeVar

from router.errors import OmniError

T = TypeVar("T")

STARTUP_SECONDS = 60.0  # a new worker's interpreter and imports, on a busy machine
GRACE_SECONDS = 1.0  # RLIMIT_CPU counts whole seconds: the kernel's kill comes after this
_SPAWN = multiprocessing.get_context("spawn")  # no fork of a threaded, event-looped process


def cpu_seconds_for(size: int, *, base: float = 1.0, per_mib: float = 0.1) -> float:
    """A budget for one input of `size` bytes: `base`, plus `per_mib` per MiB (large
    inputs cost linear time to decode and hash: about 0.04 s per MiB for email)."""
    return base + per_mib * size / (1024 * 1024)


class BudgetExceeded(OmniError):
    """One input took more than its budget; the reason names the budget."""

    retriable = False


class _OverBudget(BaseException):
    """Raised inside the call by SIGPROF (a BaseException: no `except Exception` eats it)."""


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    raise _OverBudget


def _raise(exc: Exception) -> None:
    raise exc


def _serve(conn: Connection) -> None:
    """The worker: answer calls until the caller closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    signal.signal(signal.SIGPROF, _on_sigprof)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the caller has gone
        try:
            # From our own process, through our own pipe; may import fn's module (untimed).
            fn, args, cpu = pickle.loads(request)  # noqa: S301
        except Exception as exc:
            fn, args, cpu = _raise, (exc,), 1.0
        try:
            conn.send(("started", None))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = math.ceil(usage.ru_utime + usage.ru_stime + cpu + GRACE_SECONDS)
            if hard == resource.RLIM_INFINITY or soft <= hard:
                resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
            try:
                signal.setitimer(signal.ITIMER_PROF, cpu)
                result = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            reply: tuple[str, Any] = ("ok", result)
        except _OverBudget:
            reply = ("over", None)
        except Exception as exc:
            reply = ("error", exc)
        try:
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send(("error", RuntimeError(f"unpicklable answer: {exc}")))
        except OSError:
            return


class Budget:
    """Runs functions in a worker process, each call within `cpu_seconds` of CPU."""

    def __init__(self, name: str, *, cpu_seconds: float = 1.0, wall_seconds: float = 30.0):
        self.name = name
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall_seconds
        self._lock = threading.Lock()
        self._worker: tuple[BaseProcess, Connection] | None = None

    def call(self, fn: Callable[..., T], *args: Any, cpu_seconds: float | None = None) -> T:
        """`fn(*args)` in the worker; raises `BudgetExceeded` past the budget (blocking)."""
        cpu = self.cpu_seconds if cpu_seconds is None else cpu_seconds
        with self._lock:
            process, conn = self._start()
            try:
                conn.send_bytes(pickle.dumps((fn, args, cpu), pickle.HIGHEST_PROTOCOL))
                # A new worker starts its interpreter first: the deadline is for the call.
                if not conn.poll(STARTUP_SECONDS):
                    self._stop()
                    raise BudgetExceeded(f"{self.name}: the worker did not start", retriable=True)
                conn.recv()
                if not conn.poll(self.wall_seconds):
                    self._stop()
                    raise BudgetExceeded(
                        f"{self.name}: no answer within the wall-clock deadline"
                        f" ({self.wall_seconds:g} s); the worker was stopped"
                    )
                status, value = conn.recv()
            except (EOFError, OSError):  # the worker died: the kernel's CPU limit, or worse
                process.join(1)
                exitcode = process.exitcode
                self._stop()
                raise BudgetExceeded(self._died(exitcode, cpu)) from None
        if status == "ok":
            return value  # type: ignore[no-any-return]
        if status == "over":
            raise BudgetExceeded(f"{self.name}: more than its CPU budget ({cpu:g} s)")
        raise value

    async def run(self, fn: Callable[..., T], *args: Any, cpu_seconds: float | None = None) -> T:
        """`call` from a coroutine, without blocking the event loop."""
        return await asyncio.to_thread(self.call, fn, *args, cpu_seconds=cpu_seconds)

    def close(self) -> None:
        """Stop the worker (a later call starts a new one)."""
        with self._lock:
            self._stop()

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _died(self, exitcode: int | None, cpu: float) -> str:
        if exitcode == -signal.SIGXCPU:
            return f"{self.name}: more than its CPU budget ({cpu:g} s); the worker was stopped"
        return f"{self.name}: the worker died (exit code {exitcode}) on this input"

    def _start(self) -> tuple[BaseProcess, Connection]:
        if self._worker is not None and self._worker[0].is_alive():
            return self._worker
        self._stop()
        mine, theirs = _SPAWN.Pipe()
        process = _SPAWN.Process(
            target=_serve, args=(theirs,), name=f"budget:{self.name}", daemon=True
        )
        process.start()
        theirs.close()
        self._worker = (process, mine)
        return self._worker

    def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        process, conn = worker
        conn.close()  # an idle worker reads EOF and returns
        process.join(1)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
