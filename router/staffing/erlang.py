"""Erlang C: how many servers a queue needs to answer a share of arrivals within a target.

The model (M/M/N, no abandonment): arrivals at random (Poisson), handling times
exponential with mean `handle` seconds, `N` servers, one line in arrival order.
Offered traffic `A` = arrivals per second * `handle` (erlangs). With N > A:

- P(wait) = C(N, A), the Erlang C formula, computed here from Erlang B by its
  recurrence B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1)) and
  C = N·B / (N - A·(1 - B)): no factorials, no overflow, O(N).
- service level SL(t) = 1 - C·exp(-(N - A)·t / handle): the share answered within t;
- average speed of answer ASA = C·handle / (N - A).

With N ≤ A the line grows without end: C = 1 and the service level is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A bound on the search: 100,000 servers answer any traffic a router sees.
MAX_SERVERS = 100_000


@dataclass(frozen=True, slots=True)
class Servers:
    """Servers needed, and what they achieve."""

    servers: int
    traffic: float  # erlangs
    wait_probability: float
    service_level: float
    average_speed_of_answer: float  # seconds


def erlang_b(traffic: float, servers: int) -> float:
    """The share of arrivals blocked with `servers` and no queue (Erlang B)."""
    b = 1.0
    for n in range(1, servers + 1):
        b = traffic * b / (n + traffic * b)
    return b


def wait_probability(traffic: float, servers: int) -> float:
    """P(an arrival waits): the Erlang C formula (1 when the line cannot keep up)."""
    return _c_from_b(traffic, servers, erlang_b(traffic, servers))


def service_level(traffic: float, servers: int, handle: float, target: float) -> float:
    """The share answered within `target` seconds."""
    return _level(traffic, servers, handle, target, wait_probability(traffic, servers))


def average_speed_of_answer(traffic: float, servers: int, handle: float) -> float:
    """The mean wait in seconds over all arrivals (infinite when the line cannot keep up)."""
    if servers <= traffic:
        return math.inf
    return wait_probability(traffic, servers) * handle / (servers - traffic)


def servers_needed(traffic: float, handle: float, target: float, share: float) -> Servers:
    """The fewest servers that answer `share` of arrivals within `target` seconds."""
    if not 0 < share < 1:
        raise ValueError(f"share: expected between 0 and 1, got {share}")
    if traffic <= 0:
        return Servers(0, 0.0, 0.0, 1.0, 0.0)
    b = 1.0
    for n in range(1, MAX_SERVERS + 1):
        b = traffic * b / (n + traffic * b)  # Erlang B with n servers, from n - 1
        if n <= traffic:
            continue
        c = _c_from_b(traffic, n, b)
        level = _level(traffic, n, handle, target, c)
        if level >= share:
            return Servers(n, traffic, c, level, c * handle / (n - traffic))
    raise ValueError(f"{traffic:.0f} erlangs need more than {MAX_SERVERS} servers")


def _c_from_b(traffic: float, servers: int, b: float) -> float:
    if servers <= traffic:
        return 1.0
    return servers * b / (servers - traffic * (1 - b))


def _level(traffic: float, servers: int, handle: float, target: float, c: float) -> float:
    if servers <= traffic:
        return 0.0
    return 1 - c * math.exp(-(servers - traffic) * target / handle)
