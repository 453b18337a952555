"""Quality and speed metrics of one measured point, as a registry ``{name: Metric}``.

Recall follows ann-benchmarks (Aumüller, Bernhardsson, Faithfull, "ANN-Benchmarks", Information
Systems 2020): a returned item counts when its recomputed distance to the query is at most the k-th
true distance plus 1e-3, so an index is not penalised for returning a different item of a tie; a
result listing the same id twice is an error. ``recall_ids`` is the plain id overlap beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from workbench.index.base import QueryError
from workbench.index.groundtruth import pair_distances

TIE_EPS = 1e-3


class DuplicateResultError(QueryError):
    """An index returned the same id twice for one query."""


def check_no_duplicates(ids: np.ndarray) -> None:
    """Raise ``DuplicateResultError`` naming the first query row and id that repeat (``-1`` is ignored)."""
    s = np.sort(ids, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        row, col = np.argwhere(dup)[0]
        raise DuplicateResultError(f"query {row}: id {s[row, col + 1]} appears more than once in the result")


def _as_distance(d: np.ndarray, metric: str) -> np.ndarray:
    """Smaller-is-better distances in ann-benchmarks' units: Euclidean (not squared) for l2, minus the
    similarity for cosine/ip (cosine: 1 - s differs from -s by a constant, so the 1e-3 slack is the same)."""
    return np.sqrt(np.maximum(d, 0)) if metric == "l2" else -d


def recall_ties(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, gt_distances: np.ndarray, k: int,
                metric: str, eps: float = TIE_EPS) -> np.ndarray:
    """Per-query tie-aware recall@k of ``ids`` (prepared ``base``/``queries``, ground-truth distances)."""
    ids = ids[:, :k]
    check_no_duplicates(ids)
    got = _as_distance(pair_distances(base, queries, ids, metric), metric)
    limit = _as_distance(gt_distances[:, k - 1], metric)[:, None] + eps
    return np.sum(np.nan_to_num(got, nan=np.inf) <= limit, axis=1) / k


def recall_ids(ids: np.ndarray, gt_ids: np.ndarray, k: int) -> np.ndarray:
    """Per-query fraction of the true top-k ids that were returned (ties not counted)."""
    ids, gt = ids[:, :k], gt_ids[:, :k]
    return np.array([len(np.intersect1d(a[a >= 0], b)) for a, b in zip(ids, gt)]) / k


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
    "recall": Metric("recall@k, distance ties counted (ann-benchmarks, eps 1e-3)",
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
