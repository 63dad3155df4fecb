"""The CPU budget: a worker process per budget, each call stopped past its CPU seconds."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from router.budget import Budget, BudgetExceeded
from router.errors import EnvelopeError


def double(x: int) -> int:
    return 2 * x


def spin() -> None:
    while True:
        pass


def spin_swallowing() -> None:
    """A parser that catches everything must still be stopped."""
    while True:
        try:
            while True:
                pass
        except Exception:
            pass


def refuse(reason: str) -> None:
    raise EnvelopeError(reason)


def worker_pid() -> int:
    return os.getpid()


def hang_in_c() -> None:
    """A C call that does not return to the interpreter (the signal waits for it)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGPROF])
    spin()


def sleep_long() -> None:
    time.sleep(3600)


@pytest.fixture
def budget() -> Iterator[Budget]:
    with Budget("test parser", cpu_seconds=0.2) as b:
        yield b


def test_a_call_returns_its_result_from_another_process(budget: Budget):
    assert budget.call(double, 21) == 42
    assert budget.call(worker_pid) != os.getpid()


def test_a_spinning_call_is_stopped_and_the_worker_is_usable_afterwards(budget: Budget):
    pid = budget.call(worker_pid)
    with pytest.raises(BudgetExceeded, match=r"test parser: more than its CPU budget \(0.2 s\)"):
        budget.call(spin)
    assert budget.call(double, 2) == 4
    assert budget.call(worker_pid) == pid  # the same worker: nothing had to be killed


def test_a_call_catching_every_exception_is_stopped_too(budget: Budget):
    with pytest.raises(BudgetExceeded):
        budget.call(spin_swallowing)
    assert budget.call(double, 3) == 6


def test_the_budget_is_not_retriable():
    assert BudgetExceeded("x").retriable is False


def test_the_functions_own_errors_come_back_as_themselves(budget: Budget):
    with pytest.raises(EnvelopeError, match="bad input"):
        budget.call(refuse, "bad input")
    assert budget.call(double, 4) == 8


def test_a_loop_deaf_to_the_signal_is_killed_by_the_cpu_limit_and_replaced(budget: Budget):
    pid = budget.call(worker_pid)
    with pytest.raises(BudgetExceeded, match="more than its CPU budget"):
        budget.call(hang_in_c)
    assert budget.call(double, 5) == 10
    assert budget.call(worker_pid) != pid


def test_a_call_past_the_wall_clock_deadline_is_killed_and_replaced():
    with Budget("sleepy", cpu_seconds=1.0, wall_seconds=0.5) as budget:
        pid = budget.call(worker_pid)
        with pytest.raises(BudgetExceeded, match=r"sleepy: no answer within .* \(0.5 s\)"):
            budget.call(sleep_long)
        assert budget.call(double, 6) == 12
        assert budget.call(worker_pid) != pid


def test_a_per_call_budget_overrides_the_default(budget: Budget):
    with pytest.raises(BudgetExceeded, match=r"\(0.1 s\)"):
        budget.call(spin, cpu_seconds=0.1)


async def test_run_does_not_block_the_event_loop(budget: Budget):
    assert await budget.run(double, 7) == 14
    with pytest.raises(BudgetExceeded):
        await budget.run(spin)


def test_close_stops_the_worker_and_a_later_call_starts_one(budget: Budget):
    first = budget.call(worker_pid)
    budget.close()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    assert budget.call(worker_pid) != first
