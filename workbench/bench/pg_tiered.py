"""Tiered storage in PostgreSQL, measured: a table range-partitioned by ``created_at`` into quarterly
partitions plus an archive partition (PostgreSQL docs, "Table Partitioning"), each partition with its own
HNSW index (``CREATE INDEX`` on the parent makes one per partition), against one big table with one index.

Rows get a ``created_at`` drawn uniformly over ``archive_quarters + n_quarters`` quarters ending at ``end``
(independent of the vectors); the archive holds everything before the ``n_quarters`` recent quarters.
Queries, each ``ORDER BY v <op> q LIMIT k`` with the planner kept on the vector indexes (``enable_sort =
off``, as in ``bench.pg_filtered``):

- ``recent``: ``WHERE created_at >= <start of the last recent_quarters quarters>``; on the partitioned table
  the planner prunes to those partitions (seen in ``EXPLAIN``: the ``scanned`` column), where every row
  matches, so nothing is filtered after the index scan; on the big table the same filter applies after
  its one index scan, and the query comes back short unless iterative scans are on;
- ``all``: no filter; on the partitioned table a Merge Append of every partition's index scan, the top k
  merged by the planner.

Recall is against the exact top-k of the same subset (``ExactIndex`` with ``allowed``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from psycopg.rows import scalar_row

from workbench.bench.timing import time_single_queries
from workbench.bench.pg_filtered import explain_plan, scans
from workbench.errors import QueryError
from workbench.index.exact import ExactIndex
from workbench.index.pgvector_sql import copy_in, copy_rows, index_sql, query_sql
from workbench.services.postgres import connect, table_name
from workbench.vectors.recall import recall_ties


def quarter_starts(end: str, n: int) -> list[np.datetime64]:
    """The first days of the ``n`` quarters before ``end`` (a quarter's first day), oldest first, and ``end``."""
    stop = np.datetime64(end, "M")
    if (stop.astype(int) % 3) != 0:
        raise QueryError(f"end={end!r} must be the first day of a quarter (January, April, July or October)")
    return [(stop - 3 * i).astype("datetime64[D]") for i in range(n, -1, -1)]


def _quarter_name(day: np.datetime64) -> str:
    y, m = int(str(day)[:4]), int(str(day)[5:7])
    return f"{y}q{(m - 1) // 3 + 1}"


def build_tiered(conn: Any, base: np.ndarray, stamps: np.ndarray, metric: str, bounds: Sequence[np.datetime64],
                 m: int, ef_construction: int) -> dict[str, Any]:
    """The partitioned table (archive before ``bounds[0]``, one partition per quarter of ``bounds``) and the
    single table, both loaded with COPY BINARY and HNSW-indexed; names and build seconds."""
    d = base.shape[1]
    parent, single = table_name("tier"), table_name("single")
    parts = {f"{parent}_archive": ("MINVALUE", f"'{bounds[0]}'")}
    parts.update({f"{parent}_{_quarter_name(lo)}": (f"'{lo}'", f"'{hi}'") for lo, hi in itertools.pairwise(bounds)})
    build = {"kind": "hnsw", "m": m, "ef_construction": ef_construction}
    rows = copy_rows(base, columns={"created_at": stamps})
    out: dict[str, Any] = {"parent": parent, "single": single, "partitions": list(parts)}
    conn.execute("SET maintenance_work_mem = '512MB'")
    for table, partitioned in ((parent, True), (single, False)):
        conn.execute(f"CREATE TABLE {table} (id int4 NOT NULL, v vector({d}), created_at timestamptz NOT NULL)"
                     + (" PARTITION BY RANGE (created_at)" if partitioned else ""))
        if partitioned:
            for name, (lo, hi) in parts.items():
                conn.execute(f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ({lo}) TO ({hi})")
        t0 = time.perf_counter()
        copy_in(conn, table, rows)             # rows are routed to their partitions by the server
        conn.execute(f"VACUUM (ANALYZE) {table}")
        t1 = time.perf_counter()
        conn.execute(index_sql(table, "hnsw", "vector", metric, d, build))
        out[f"{'partitioned' if partitioned else 'single'}_load_s"] = t1 - t0
        out[f"{'partitioned' if partitioned else 'single'}_index_s"] = time.perf_counter() - t1
    return out


def tiered_experiment(base: np.ndarray, queries: np.ndarray, metric: str, *, k: int = 10, n_quarters: int = 4,
                      archive_quarters: int = 8, recent_quarters: int = 1, m: int = 16, ef_construction: int = 64,
                      ef_search: int = 40, end: str = "2026-01-01", seed: int = 0, runs: int = 3, warmup: int = 10,
                      on_point: Callable[[dict[str, Any]], None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Recall, short results, latency and the scanned relations of each (layout, scope) query; returns the
    rows and the layout (table and partition names, build seconds). Tables are dropped at the end."""
    if not 1 <= recent_quarters <= n_quarters:
        raise QueryError(f"recent_quarters must lie in [1, n_quarters={n_quarters}], got {recent_quarters}")
    exact = ExactIndex(metric)
    exact.build(base)
    q = exact.prepare_queries(queries)
    bounds = quarter_starts(end, n_quarters)
    first = quarter_starts(str(bounds[0]), archive_quarters)[0]
    rng = np.random.default_rng(seed)
    span = (np.datetime64(end, "us") - first.astype("datetime64[us]")).astype(np.int64)
    stamps = first.astype("datetime64[us]") + rng.integers(0, span, len(base)).astype("timedelta64[us]")
    since = bounds[n_quarters - recent_quarters]
    recent = np.flatnonzero(stamps >= since.astype("datetime64[us]"))
    truth = {"recent": (recent, exact.search(q, k, allowed=recent)), "all": (None, exact.search(q, k))}
    conn = connect()
    conn.execute("SET TimeZone = 'UTC'")       # partition bounds and filters in the time zone the stamps are in
    layout = build_tiered(conn, exact.vectors, stamps, metric, bounds, m, ef_construction)
    recent_parts = set(layout["partitions"][-recent_quarters:])
    cases = [("partitioned", "recent", "off"), ("partitioned", "all", "off"), ("single", "recent", "off"),
             ("single", "recent", "relaxed_order"), ("single", "all", "off")]
    rows = []
    try:
        for layout_name, scope, iterative in cases:
            table = layout["parent" if layout_name == "partitioned" else "single"]
            where = f"created_at >= '{since}'" if scope == "recent" else ""
            params = {"ef_search": ef_search, "iterative_scan": iterative}
            statement = query_sql(table, "vector", metric, base.shape[1], k, params, False, False, where)
            settings = {"hnsw.ef_search": str(ef_search), "hnsw.iterative_scan": iterative, "enable_sort": "off",
                        "max_parallel_workers_per_gather": "0"}
            found = scans(explain_plan(conn, statement, settings, {"q": q[0]}))
            cur = conn.cursor(row_factory=scalar_row, binary=True)

            def one(row: np.ndarray, _s: str = statement, _cur: Any = cur) -> list[int]:
                _cur.execute(_s, {"q": row[0]}, prepare=True)
                return _cur.fetchall()
            walls, seconds, results = time_single_queries(one, [q[i:i + 1] for i in range(len(q))], runs,
                                                          min(warmup, len(q)))
            ids = np.full((len(q), k), -1, dtype=np.int64)
            for i, r in enumerate(results):
                ids[i, :len(r)] = r
            allowed, (true_d, _) = truth[scope]
            n_in = len(base) if allowed is None else int(allowed.size)
            n_results = (ids >= 0).sum(axis=1)
            relations = sorted({s["relation"] for s in found})
            row = {"layout": layout_name, "scope": scope, "iterative_scan": iterative, "ef_search": ef_search,
                   "k": k, "n_base": len(base), "n_queries": len(q), "n_in_scope": n_in,
                   "n_partitions": len(layout["partitions"]) if layout_name == "partitioned" else 1,
                   "scanned": ",".join("table" if r == layout["single"] else r.replace(layout["parent"] + "_", "")
                                       for r in relations),
                   "n_scanned": len(relations),
                   "pruned": bool(layout_name == "partitioned" and scope == "recent" and set(relations) <= recent_parts),
                   "recall": float(recall_ties(exact.vectors, q, ids, true_d, k, metric, allowed).mean()),
                   "frac_short": float((n_results < min(k, n_in)).mean()), "mean_results": float(n_results.mean()),
                   "p50_ms": float(np.percentile(seconds, 50) * 1e3), "p95_ms": float(np.percentile(seconds, 95) * 1e3),
                   "qps": float(len(q) / min(walls))}
            rows.append(row)
            if on_point is not None:
                on_point(row)
    finally:
        for table in (layout["parent"], layout["single"]):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
    layout.update({"recent_partitions": sorted(recent_parts), "recent_since": str(since), "first": str(first),
                   "end": end})
    return pd.DataFrame(rows), layout
