"""The QPS interval: the order-statistic confidence interval of the median, against hand-computed values
and a brute-force binomial reference; the metrics registry's qps fields on hand-written passes."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.index.metrics import METRICS, PointData, compute_metrics, median_coverage, median_interval


def test_hand_computed_intervals():
    # below 6 values the range is the interval: coverage 1 - 2 * 0.5**n
    assert median_interval([3.0]) == (3.0, 3.0, 3.0, 0.0)
    assert median_interval([5.0, 1.0, 3.0]) == (3.0, 1.0, 5.0, 0.75)
    assert median_interval([10, 40, 20, 50, 30]) == (30.0, 10.0, 50.0, 1 - 2 / 32)
    assert median_interval([1, 2, 3, 4, 5, 6]) == (3.5, 1.0, 6.0, 1 - 2 / 64)
    # 9 values: j = 2 covers 1 - 2 (1 + 9) / 512 = 0.9609 >= 0.95; j = 3 would be 1 - 2 (1 + 9 + 36) / 512 = 0.82
    med, lo, hi, cov = median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5])
    assert (med, lo, hi) == (5.0, 2.0, 8.0) and cov == pytest.approx(1 - 20 / 512)
    assert all(math.isnan(v) for v in median_interval([]))


def test_coverage_by_enumeration():
    """P(X_(j) <= m <= X_(n+1-j)) counted over all 2**n sign patterns (each value above or below the median)."""
    for n in range(1, 11):
        for j in range(1, (n + 1) // 2 + 1):
            # the interval misses the median when fewer than j values lie below it, or fewer than j above
            misses = sum(1 for signs in product((0, 1), repeat=n) if sum(signs) < j or n - sum(signs) < j)
            assert median_coverage(n, j) == pytest.approx(1 - misses / 2 ** n)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False), min_size=1, max_size=40))
def test_interval_holds_the_median_with_the_chosen_order_statistics(values):
    med, lo, hi, cov = median_interval(values)
    x = sorted(values)
    n = len(x)
    assert lo <= med <= hi and lo in x and hi in x
    assert med == pytest.approx(float(np.median(x)))
    j = x.index(lo) + 1 if x.count(lo) == 1 else None
    if n >= 6:
        assert cov >= 0.95      # the target coverage, reached from 6 values on
    else:
        assert (lo, hi, cov) == (x[0], x[-1], pytest.approx(1 - 2 * 0.5 ** n))
    if j is not None and j + 1 <= (n + 1) // 2:
        assert median_coverage(n, j + 1) < 0.95   # the narrowest interval that keeps the coverage


def test_qps_metrics_on_hand_written_passes():
    nq = 100
    point = PointData(k=1, metric="l2", base=np.eye(2, dtype=np.float32), queries=np.zeros((nq, 2), np.float32),
                      gt_distances=np.zeros((nq, 1), np.float32), gt_ids=np.zeros((nq, 1), np.int64),
                      ids=np.zeros((nq, 1), np.int64), single_runs_s=[0.1, 0.05, 0.02, 0.04, 0.025],
                      latencies_s=np.full(5 * nq, 1e-4), batch_runs_s=[0.01, 0.02, 0.04], build_s=1.0,
                      size_bytes=16, ntotal=2)
    m = compute_metrics(point)
    # pass QPS: 1000, 2000, 5000, 2500, 4000 -> median 2500, range 1000..5000, best 5000
    assert (m["qps"], m["qps_lo"], m["qps_hi"], m["qps_best"]) == pytest.approx((2500, 1000, 5000, 5000))
    assert m["qps_coverage"] == pytest.approx(0.9375)
    assert m["batch_qps"] == pytest.approx(5000)              # median of 10000, 5000, 2500
    assert m["p50_ms"] == pytest.approx(0.1)
    for name in ("qps", "qps_lo", "qps_hi", "qps_best", "batch_qps"):
        assert METRICS[name].direction == "higher" and METRICS[name].description
