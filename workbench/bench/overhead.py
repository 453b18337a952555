"""How much the harness adds to a query: its one-query-at-a-time QPS against a bare loop that calls the
library directly (faiss ``index.search`` with the parameter set on the index, hnswlib ``knn_query``) on the
same prepared queries. Passes alternate (harness, bare, harness, ...) so machine noise hits both alike;
each side keeps its best pass."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from workbench.bench.harness import BenchSet, point_label, time_single_queries
from workbench.index.base import VectorIndex
from workbench.index.spec import IndexSpec


def bare_search(index: VectorIndex, k: int, query_params: dict[str, Any], threads: int) -> Callable:
    """The classic library call, parameters set on the library object itself, no wrapper in between."""
    raw = index.raw
    if index.library == "hnswlib":
        raw.set_ef(int(query_params.get("ef", 10)))
        return lambda row: raw.knn_query(row, k, threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    top = faiss.downcast_index(raw)
    inner = faiss.downcast_index(top.base_index) if "k_factor" in query_params else top
    if "k_factor" in query_params:
        top.k_factor = float(query_params["k_factor"])
    if "nprobe" in query_params:
        faiss.extract_index_ivf(inner).nprobe = int(query_params["nprobe"])
    if "efSearch" in query_params:
        inner.hnsw.efSearch = int(query_params["efSearch"])
    return lambda row: raw.search(row, k)


def bare_loop(search: Callable, rows: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for row in rows:
        search(row)
    return time.perf_counter() - t0


def measure_overhead(data: BenchSet, spec: IndexSpec, k: int = 10, threads: int = 1, runs: int = 5,
                     warmup: int = 200) -> list[dict[str, Any]]:
    """For each point of ``spec``: harness QPS, bare-loop QPS and their ratio (best of ``runs`` each)."""
    index = spec.make(data.metric)
    index.build(data.base)
    q = index.prepare_queries(data.queries)
    rows = [q[i:i + 1] for i in range(len(q))]
    out = []
    for qp in spec.points():
        index.set_threads(threads)
        harness_fn = index.searcher(k, **qp)
        bare_fn = bare_search(index, k, qp, threads)
        for row in rows[:warmup]:
            harness_fn(row), bare_fn(row)
        harness_walls, bare_walls = [], []
        for _ in range(runs):
            harness_walls += time_single_queries(harness_fn, rows, 1, 0)[0]
            bare_walls.append(bare_loop(bare_fn, rows))
        h, b = len(rows) / min(harness_walls), len(rows) / min(bare_walls)
        out.append({"point": point_label(spec, qp), "k": k, "threads": threads, "n_queries": len(rows),
                    "runs": runs, "harness_qps": h, "bare_qps": b, "ratio": h / b,
                    "within_5pct": bool(abs(h / b - 1) <= 0.05)})
    return out
