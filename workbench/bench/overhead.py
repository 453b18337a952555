"""How much the harness adds to a query: its one-query-at-a-time QPS against a bare loop that calls the
library directly (faiss ``index.search`` with the parameter set on the index, hnswlib ``knn_query``,
usearch ``Index.search``, ScaNN ``ScannSearcher.search``) on the same prepared queries. Passes alternate
(harness, bare, bare, harness, ...) so machine noise hits both alike; each side keeps its best pass (the
harness side is the sweep's own pass, :func:`workbench.bench.timing.time_pass`), and the median of the
per-round ratios is reported beside it with its order-statistic interval."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from workbench.bench.harness import BenchSet, point_label
from workbench.bench.timing import time_pass
from workbench.index.base import VectorIndex
from workbench.index.metrics import median_interval
from workbench.index.spec import IndexSpec


OVERHEAD_LIMIT = 0.03  # issue 13: the harness may cost at most 3% of the bare loop's QPS


def bare_search(index: VectorIndex, k: int, query_params: dict[str, Any], threads: int) -> Callable:
    """The classic library call, parameters set on the library object itself, no wrapper in between."""
    raw = index.raw
    if index.library == "hnswlib":
        raw.set_ef(int(query_params.get("ef", 10)))
        return lambda row: raw.knn_query(row, k, threads)
    if index.library in ("usearch", "scann"):
        q = index.effective_query_params(**query_params)
        if index.library == "usearch":
            raw.expansion_search = max(k, int(q["ef"]))
            return lambda row: raw.search(row, k, threads=threads)
        raw.set_num_threads(threads)
        pre, leaves = max(k, int(q["pre_reorder"])), int(q["leaves_to_search"])
        return lambda row: raw.search(row[0], final_num_neighbors=k, pre_reorder_num_neighbors=pre,
                                      leaves_to_search=leaves)
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
        for r in range(runs):   # who goes first alternates, so neither side always follows the other
            for side in ((0, 1) if r % 2 == 0 else (1, 0)):
                if side == 0:
                    harness_walls.append(time_pass(harness_fn, rows)[0])
                else:
                    bare_walls.append(bare_loop(bare_fn, rows))
        h, b = len(rows) / min(harness_walls), len(rows) / min(bare_walls)
        # the ratio of each round's pair: under load its median is steadier than the ratio of the bests
        paired, lo, hi, coverage = median_interval([bw / hw for hw, bw in zip(harness_walls, bare_walls)])
        out.append({"point": point_label(spec, qp), "k": k, "threads": threads, "n_queries": len(rows),
                    "runs": runs, "harness_qps": h, "bare_qps": b, "ratio": h / b,
                    "paired_ratio": paired, "paired_ratio_lo": lo, "paired_ratio_hi": hi,
                    "paired_coverage": coverage, "within_3pct": bool(h / b >= 1 - OVERHEAD_LIMIT)})
    return out
