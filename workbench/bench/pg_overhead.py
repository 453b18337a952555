"""What the harness and the protocol add to a pgvector query.

``measure_pg_overhead``: one-query-at-a-time QPS through ``PgvectorIndex.searcher`` (as the harness times
it) against a bare psycopg loop running the same prepared statement, with the same settings, on a
connection of its own; passes alternate as in ``workbench.bench.overhead``, here block by block. ``server_time_ms``: the server-side execution time of queries from
``EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)`` (PostgreSQL docs, "EXPLAIN"), so that client latency minus
server time shows the protocol and driver cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import scalar_row

from workbench.bench.harness import BenchSet, point_label
from workbench.bench.timing import time_single_queries
from workbench.bench.overhead import bare_loop
from workbench.index.pgvector import PgvectorIndex
from workbench.index.spec import IndexSpec
from workbench.services.postgres import connect

TARGET = 0.10     # the harness's QPS must be within 10% of the bare loop's
BLOCK = 50        # queries per alternation


def _session(index: PgvectorIndex, k: int, query_params: dict[str, Any]) -> tuple[str, psycopg.Connection]:
    """A new connection with the settings ``index.searcher`` applies, and the statement it prepares."""
    sql, settings = index.statement(k, **query_params)
    conn = connect()
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return sql, conn


def bare_pg_search(index: PgvectorIndex, k: int, query_params: dict[str, Any]) -> tuple[Callable, psycopg.Connection]:
    """``f(vector) -> ids``: psycopg alone, the statement prepared; close the returned connection after use."""
    sql, conn = _session(index, k, query_params)
    cur = conn.cursor(row_factory=scalar_row, binary=True)

    def bare(v: np.ndarray) -> list[int]:
        cur.execute(sql, {"q": v}, prepare=True)
        return cur.fetchall()
    return bare, conn


def server_time_ms(index: PgvectorIndex, queries: np.ndarray, k: int, warmup: int = 10,
                   **query_params: Any) -> np.ndarray:
    """Server-side execution time (ms) of each query: ``PgvectorIndex.server_times_ms``."""
    return index.server_times_ms(queries, k, warmup=warmup, **query_params)


def alternating_blocks(harness_fn: Callable, bare_fn: Callable, rows: list[np.ndarray], vectors: list[np.ndarray],
                       runs: int, block: int = BLOCK) -> tuple[float, float, np.ndarray]:
    """``(harness seconds, bare seconds, harness latencies)`` for all queries: the passes alternate block by
    block (harness, bare, harness, ...) and each side keeps, per block, its best of ``runs``. On a shared
    machine a burst of load then spoils one block of one pass, not a whole pass of one side."""
    starts = range(0, len(rows), block)
    best_h, best_b = np.full(len(starts), np.inf), np.full(len(starts), np.inf)
    latencies: list[np.ndarray] = []
    for _ in range(runs):
        for j, s in enumerate(starts):
            walls, lat, _ = time_single_queries(harness_fn, rows[s:s + block], 1, 0)
            best_h[j] = min(best_h[j], walls[0])
            best_b[j] = min(best_b[j], bare_loop(bare_fn, vectors[s:s + block]))
            latencies.append(lat)
    return float(best_h.sum()), float(best_b.sum()), np.concatenate(latencies)


def measure_pg_overhead(data: BenchSet, spec: IndexSpec, k: int = 10, runs: int = 10, warmup: int = 200,
                        sample: int = 100) -> list[dict[str, Any]]:
    """For each point of a pgvector ``spec``: harness and bare-loop QPS (``alternating_blocks``), their
    ratio, and the median client latency beside the median server time of ``sample`` queries."""
    index = spec.make(data.metric)
    try:
        index.build(data.base)
        q = index.prepare_queries(data.queries)
        rows, vectors = [q[i:i + 1] for i in range(len(q))], list(q)
        out = []
        for qp in spec.points():
            harness_fn = index.searcher(k, **qp)
            bare_fn, conn = bare_pg_search(index, k, qp)
            with conn:
                for i in range(min(warmup, len(q))):
                    harness_fn(rows[i]), bare_fn(vectors[i])
                harness_s, bare_s, latencies = alternating_blocks(harness_fn, bare_fn, rows, vectors, runs)
            server = server_time_ms(index, data.queries[:sample], k, **qp)
            h, b = len(rows) / harness_s, len(rows) / bare_s
            client_ms, server_ms = float(np.median(latencies) * 1e3), float(np.median(server))
            out.append({"point": point_label(spec, qp), "k": k, "n_queries": len(rows), "runs": runs,
                        "harness_qps": h, "bare_qps": b, "ratio": h / b, "within_10pct": bool(abs(h / b - 1) <= TARGET),
                        "client_p50_ms": client_ms, "server_p50_ms": server_ms, "server_share": server_ms / client_ms,
                        "n_server_sample": len(server), **{f"build_{k_}": v for k_, v in index.build_stats.items()
                                                           if k_ != "notices"}})
        return out
    finally:
        index.close()
