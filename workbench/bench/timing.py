"""Timed passes of one-query-at-a-time search: the clock of every benchmark (the ANN sweep, the filtered
and database benchmarks, ``ann-overhead``'s harness side)."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np


def time_pass(search_one: Callable[[np.ndarray], Any], rows: Sequence[np.ndarray],
              keep: bool = False) -> tuple[float, np.ndarray, list[Any] | None]:
    """One timed pass, one query at a time: ``(wall time, per-query latencies, results or None)``.

    One clock read per query keeps the loop as close to a bare loop as Python allows. Results are held
    only with ``keep``: a thousand live result arrays cost allocations a bare loop does not make (2.5% of
    QPS at 25K queries/s, fast-scan PQ), so the sweep takes its ids in an untimed pass (:func:`collect`)."""
    now, n = time.perf_counter, len(rows)
    stamps = [0.0] * (n + 1)
    if keep:
        out: list[Any] | None = [None] * n
        for i in range(n):
            stamps[i] = now()
            out[i] = search_one(rows[i])
    else:
        out = None
        for i in range(n):
            stamps[i] = now()
            search_one(rows[i])
    stamps[n] = now()
    return stamps[n] - stamps[0], np.diff(np.asarray(stamps)), out


def collect(search_one: Callable[[np.ndarray], Any], rows: Sequence[np.ndarray]) -> list[Any]:
    """An untimed pass: every row's result, in order (it warms the index up as well)."""
    return [search_one(row) for row in rows]


def time_single_queries(search_one: Callable[[np.ndarray], Any], rows: Sequence[np.ndarray], runs: int,
                        warmup: int, budget_s: float = float("inf")) -> tuple[list[float], np.ndarray, list[Any]]:
    """Consecutive passes of one search: ``(wall time of each pass, latencies of the best pass, its results)``.

    Passes stop early once ``budget_s`` is spent (at least one pass runs): a pass that long averages out
    scheduling noise. (The sweep interleaves the passes of many points instead: :func:`measure_group`.)"""
    for row in rows[:warmup]:
        search_one(row)
    walls: list[float] = []
    best: tuple[np.ndarray, list[Any]] | None = None
    for _ in range(runs):   # results kept: the callers' queries take milliseconds, holding them costs nothing
        wall, lat, out = time_pass(search_one, rows, keep=True)
        walls.append(wall)
        if wall == min(walls):
            best = (lat, out)
        if sum(walls) > budget_s:
            break
    return walls, best[0], best[1]
