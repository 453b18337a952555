"""Ground truth (a disk cache around the kernel's exact top-k) and the metric registry.

Exact top-k and recall themselves are tested against brute force in ``test_vectors_kernel.py``."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.index.groundtruth import ground_truth
from workbench.index.metrics import METRICS
from workbench.vectors.kernel import exact_topk


def test_ground_truth_cache_round_trip_and_corruption(tmp_path):
    rng = np.random.default_rng(4)
    base, q = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((10, 8)).astype(np.float32)
    d1, i1 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    d0, i0 = exact_topk(base, q, 50, "l2")
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)
    (entry,) = tmp_path.glob("*.npz")
    d2, i2 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    np.testing.assert_array_equal(i1, i2)
    entry.write_bytes(entry.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="fails its checksum"):
        d3, i3 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    np.testing.assert_array_equal(i1, i3)


@pytest.mark.parametrize("cache", [False, True])
def test_ground_truth_of_a_base_smaller_than_k_has_no_missing_slots(tmp_path, cache):
    base = np.arange(12, dtype=np.float32).reshape(6, 2)
    d, i = ground_truth(base, base[:2], "ip", k=100, cache=tmp_path if cache else False, progress=False)
    assert i.shape == (2, 6) and (i >= 0).all()
    assert i[0].tolist() == [5, 4, 3, 2, 1, 0]


def test_metric_registry_has_directions():
    assert METRICS["recall"].direction == "higher" and METRICS["p99_ms"].direction == "lower"
    assert all(m.description and callable(m.function) for m in METRICS.values())
