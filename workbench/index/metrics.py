"""Quality and speed metrics of one measured point, as a registry ``{name: Metric}``.

Recall is ``workbench.vectors.recall``'s: tie-aware as in ann-benchmarks (Aumüller, Bernhardsson,
Faithfull, "ANN-Benchmarks", Information Systems 2020), with the plain id overlap beside it.

QPS is a measurement with its uncertainty: the median over a point's timed passes, with the
distribution-free confidence interval of the median from order statistics (:func:`median_interval`);
the best pass (the figure ann-benchmarks reports) is kept beside it as ``qps_best``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

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
    latencies_s: np.ndarray    # per-query latencies, pooled over every pass
    batch_runs_s: list[float]  # wall time of each whole-batch search (all threads)
    build_s: float
    size_bytes: int
    ntotal: int


CONFIDENCE = 0.95  # the coverage the QPS interval aims at (reached from 6 passes on)


def median_coverage(n: int, j: int) -> float:
    """P(X_(j) <= median <= X_(n+1-j)) for ``n`` independent draws of a continuous distribution:
    ``1 - 2 P(Binomial(n, 1/2) < j)``; ``1 - 2 * 0.5**n`` for the range (``j = 1``)."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2.0 ** n


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(median, lo, hi, coverage)`` of ``values``: the distribution-free confidence interval of the median
    from order statistics, ``[X_(j), X_(n+1-j)]`` with the largest ``j`` whose coverage is still at least
    ``confidence`` (Conover, *Practical Nonparametric Statistics*, 3rd ed. 1999, section 3.2; David &
    Nagaraja, *Order Statistics*, 2003, section 7.1). With fewer than 6 values no such ``j`` exists and
    the interval is the range, min..max, of coverage ``1 - 2 * 0.5**n`` (0.9375 for 5 passes, 0.75 for 3,
    0 for one). It assumes nothing about the shape of the timing distribution, only independent passes."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    j = 1
    while j + 1 <= (n + 1) // 2 and median_coverage(n, j + 1) >= confidence:
        j += 1
    return float(np.median(x)), float(x[j - 1]), float(x[n - j]), median_coverage(n, j)


def _qps(p: PointData) -> np.ndarray:
    return len(p.queries) / np.asarray(p.single_runs_s, dtype=float)


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
    "qps": Metric("queries per second, one query at a time: the median over the timed passes",
                  lambda p: median_interval(_qps(p))[0], "higher"),
    "qps_lo": Metric("lower end of the median's order-statistic confidence interval over the passes (min "
                     "below 6 passes)", lambda p: median_interval(_qps(p))[1], "higher"),
    "qps_hi": Metric("upper end of the median's order-statistic confidence interval over the passes (max "
                     "below 6 passes)", lambda p: median_interval(_qps(p))[2], "higher"),
    "qps_coverage": Metric("coverage of [qps_lo, qps_hi]: 1 - 2 * 0.5**passes below 6 passes, >= 0.95 from 6",
                           lambda p: median_interval(_qps(p))[3], "higher"),
    "qps_best": Metric("queries per second, one query at a time, best pass (the ann-benchmarks figure; "
                       "biased upward by noise, kept for comparison)", lambda p: float(_qps(p).max()), "higher"),
    "batch_qps": Metric("queries per second, all queries in one call on all threads (median over the calls)",
                        lambda p: float(np.median(len(p.queries) / np.asarray(p.batch_runs_s, dtype=float))),
                        "higher"),
    "p50_ms": Metric("median single-query latency over all passes pooled, ms",
                     lambda p: float(np.percentile(p.latencies_s, 50) * 1e3), "lower"),
    "p95_ms": Metric("95th percentile single-query latency over all passes pooled, ms",
                     lambda p: float(np.percentile(p.latencies_s, 95) * 1e3), "lower"),
    "p99_ms": Metric("99th percentile single-query latency over all passes pooled, ms",
                     lambda p: float(np.percentile(p.latencies_s, 99) * 1e3), "lower"),
    "build_s": Metric("build (train + add) time, seconds", lambda p: p.build_s, "lower"),
    "size_bytes": Metric("serialized index size, bytes", lambda p: float(p.size_bytes), "lower"),
    "bytes_per_vector": Metric("serialized size per indexed vector", lambda p: p.size_bytes / p.ntotal, "lower"),
}


def compute_metrics(point: PointData) -> dict[str, float]:
    """Every registered metric of ``point``."""
    return {name: m.function(point) for name, m in METRICS.items()}
