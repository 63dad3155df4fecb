"""Erlang C against published worked examples (router/staffing/erlang.py)."""

from __future__ import annotations

import pytest

from router.staffing.erlang import (
    average_speed_of_answer,
    servers_needed,
    service_level,
    wait_probability,
)


def test_twenty_erlangs_need_26_servers_to_keep_the_wait_probability_under_15_percent() -> None:
    # Published example: 600 calls an hour of 120 s are 20 erlangs; a 15% probability of
    # waiting needs 26 circuits, with an average delay of about 3 s a call; 30 circuits
    # bring the delay probability to 2.5%.
    assert wait_probability(20, 25) > 0.15 >= wait_probability(20, 26)
    assert average_speed_of_answer(20, 26, 120) == pytest.approx(3, abs=0.2)
    assert wait_probability(20, 30) == pytest.approx(0.025, abs=0.001)
    # The same question as a service level: answered at once (within 0 s) 85% of the time.
    assert servers_needed(20, 120, 0, 0.85).servers == 26


def test_the_half_hour_of_360_calls_of_four_minutes_on_55_agents() -> None:
    # Published step-by-step example: 360 calls a half hour, 4 minutes each (48 erlangs),
    # 55 agents, a 15 s target: 24% wait, an average answer of about 8.2 s, and about
    # 85% answered within 15 s.
    assert wait_probability(48, 55) == pytest.approx(0.24, abs=0.005)
    assert average_speed_of_answer(48, 55, 240) == pytest.approx(8.2, abs=0.1)
    assert service_level(48, 55, 240, 15) == pytest.approx(0.85, abs=0.01)
    needed = servers_needed(48, 240, 15, 0.85)
    assert needed.servers == 56 and needed.service_level >= 0.85
    assert service_level(48, 55, 240, 15) < 0.85


def test_more_servers_never_serve_worse_and_too_few_serve_nobody() -> None:
    levels = [service_level(10, n, 300, 60) for n in range(1, 25)]
    assert levels == sorted(levels)
    assert levels[9] == 0.0  # 10 servers for 10 erlangs: the line grows without end
    assert wait_probability(10, 10) == 1.0


def test_no_traffic_needs_nobody_and_a_bad_share_is_refused() -> None:
    assert servers_needed(0, 120, 20, 0.8).servers == 0
    with pytest.raises(ValueError, match="share"):
        servers_needed(5, 120, 20, 1.0)


def test_a_huge_traffic_is_worked_out_in_one_pass() -> None:
    needed = servers_needed(20_000, 300, 20, 0.8)
    assert 20_000 < needed.servers < 20_500
