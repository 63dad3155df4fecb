from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from router.routing.queueing import effective_priority, queue_rank

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
waiting = st.tuples(st.integers(0, 3), st.integers(0, 6 * 3600))  # (level, seconds after T0)


@given(st.lists(waiting, min_size=2, max_size=30), st.integers(0, 24 * 3600), st.integers(60, 3600))
def test_stored_rank_orders_like_priority_with_aging_at_any_moment(
    items: list[tuple[int, int]], later: int, step_seconds: int
) -> None:
    step = timedelta(seconds=step_seconds)
    entries = [(level, T0 + timedelta(seconds=s)) for level, s in items]
    now = max(since for _, since in entries) + timedelta(seconds=later)
    for a in entries:
        for b in entries:
            ea, eb = (effective_priority(lvl, since, now, step) for lvl, since in (a, b))
            ra, rb = (queue_rank(lvl, since, step) for lvl, since in (a, b))
            if abs(ea - eb) > 1e-6:  # clearly different effective priority
                assert (ea > eb) == (ra < rb)


def test_aging_overtakes_after_a_step_per_level() -> None:
    step = timedelta(minutes=10)
    old_normal = queue_rank(1, T0, step)
    new_high_5m = queue_rank(2, T0 + timedelta(minutes=5), step)
    new_high_15m = queue_rank(2, T0 + timedelta(minutes=15), step)
    assert new_high_5m < old_normal  # high, only 5 minutes newer: still first
    assert old_normal < new_high_15m  # waited more than one step longer: overtakes
