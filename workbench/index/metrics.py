"""Quality and speed metrics of one measured point, as a registry ``{name: Metric}``.

Recall is ``workbench.vectors.recall``'s: tie-aware as in ann-benchmarks (Aumüller, Bernhardsson,
Faithfull, "ANN-Benchmarks", Information Systems 2020), with the plain id overlap beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from workbench.vectors.recall import TIE_EPS, recall_ids, recall_ties


@dataclass
class PointData:
    """What the harness measured for one (build configuration, query parameters) point."""

    k: int
    metric: str
    base: np.ndarray           # prepared vectors (normalised for cosine)
    queries: np.ndarray
    gt_distances: np.ndarray   # (nq, >= k)
    gt_ids: np.ndarray
    ids: np.ndarray            # (nq, k) returned ids, one query at a time
    single_runs_s: list[float]  # wall time of each one-query-at-a-time pass over all queries
    latencies_s: np.ndarray    # per-query latency of the fastest pass
    batch_runs_s: list[float]  # wall time of each whole-batch search (all threads)
    build_s: float
    size_bytes: int
    ntotal: int


@dataclass(frozen=True)
class Metric:
    description: str
    function: Callable[[PointData], float]
    direction: str  # "higher" or "lower" is better


METRICS: dict[str, Metric] = {
    "recall": Metric(f"recall@k, distance ties counted (ann-benchmarks, eps {TIE_EPS:g})",
                     lambda p: float(recall_ties(p.base, p.queries, p.ids, p.gt_distances, p.k, p.metric).mean()),
                     "higher"),
    "recall_ids": Metric("recall@k by id overlap with the exact top-k",
                         lambda p: float(recall_ids(p.ids, p.gt_ids, p.k).mean()), "higher"),
    "qps": Metric("queries per second, one query at a time (best pass)",
                  lambda p: len(p.queries) / min(p.single_runs_s), "higher"),
    "batch_qps": Metric("queries per second, all queries in one call on all threads (best pass)",
                        lambda p: len(p.queries) / min(p.batch_runs_s), "higher"),
    "p50_ms": Metric("median single-query latency, ms", lambda p: float(np.percentile(p.latencies_s, 50) * 1e3),
                     "lower"),
    "p95_ms": Metric("95th percentile single-query latency, ms",
                     lambda p: float(np.percentile(p.latencies_s, 95) * 1e3), "lower"),
    "p99_ms": Metric("99th percentile single-query latency, ms",
                     lambda p: float(np.percentile(p.latencies_s, 99) * 1e3), "lower"),
    "build_s": Metric("build (train + add) time, seconds", lambda p: p.build_s, "lower"),
    "size_bytes": Metric("serialized index size, bytes", lambda p: float(p.size_bytes), "lower"),
    "bytes_per_vector": Metric("serialized size per indexed vector", lambda p: p.size_bytes / p.ntotal, "lower"),
}


def compute_metrics(point: PointData) -> dict[str, float]:
    """Every registered metric of ``point``."""
    return {name: m.function(point) for name, m in METRICS.items()}
