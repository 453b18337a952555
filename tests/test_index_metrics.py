"""Ground truth and recall: ties counted as ann-benchmarks does, duplicates rejected, cache checked."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.index.groundtruth import exact_knn, ground_truth, prepare
from workbench.index.metrics import METRICS, DuplicateResultError, recall_ids, recall_ties

# base on a line: query at 0; points 1 and -1 tie at distance 1, 2 and -2 at distance 2 (l2)
LINE = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0], [3.0]], dtype=np.float32)
Q0 = np.array([[0.0]], dtype=np.float32)


def test_ties_at_the_kth_distance_count():
    gd, gi = exact_knn(LINE, Q0, 3, "l2", progress=False)
    assert gi.tolist() == [[0, 1, 2]]                       # ties ordered by id
    # true top-3 distances 0, 1, 1: returning the other tie (id 2 for id 1) is just as good
    assert recall_ties(LINE, Q0, np.array([[0, 2, 1]]), gd, 3, "l2")[0] == 1.0
    # id 3 (distance 2) is beyond the 3rd true distance 1 + 1e-3
    assert recall_ties(LINE, Q0, np.array([[0, 1, 3]]), gd, 3, "l2")[0] == pytest.approx(2 / 3)
    # k=4: the 4th true distance is 2, so ids 3 and 4 are interchangeable, id 5 is not
    gd4, gi4 = exact_knn(LINE, Q0, 4, "l2", progress=False)
    assert recall_ties(LINE, Q0, np.array([[0, 1, 2, 4]]), gd4, 4, "l2")[0] == 1.0
    assert recall_ids(np.array([[0, 1, 2, 4]]), gi4, 4)[0] == 0.75     # plain id overlap misses the tie
    assert recall_ties(LINE, Q0, np.array([[0, 1, 2, 5]]), gd4, 4, "l2")[0] == 0.75


def test_tie_slack_is_1e_3_in_euclidean_units():
    base = np.array([[0.0], [1.0], [1.0009], [1.0011]], dtype=np.float32)
    gd, _ = exact_knn(base, Q0, 2, "l2", progress=False)   # true: 0, 1
    assert recall_ties(base, Q0, np.array([[0, 2]]), gd, 2, "l2")[0] == 1.0     # 1.0009 <= 1 + 1e-3
    assert recall_ties(base, Q0, np.array([[0, 3]]), gd, 2, "l2")[0] == 0.5     # 1.0011 >  1 + 1e-3


def test_ties_in_inner_product_and_missing_results():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    q = np.array([[1.0, 1.0]], dtype=np.float32)             # dots 1, 1, 1, 1: everything ties
    gd, _ = exact_knn(base, q, 2, "ip", progress=False)
    assert recall_ties(base, q, np.array([[3, 2]]), gd, 2, "ip")[0] == 1.0
    assert recall_ties(base, q, np.array([[3, -1]]), gd, 2, "ip")[0] == 0.5     # -1: no result


def test_duplicate_ids_are_an_error():
    gd, _ = exact_knn(LINE, Q0, 3, "l2", progress=False)
    with pytest.raises(DuplicateResultError, match="query 0: id 1 appears more than once"):
        recall_ties(LINE, Q0, np.array([[1, 0, 1]]), gd, 3, "l2")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_knn_matches_a_naive_sort(metric):
    rng = np.random.default_rng(3)
    base = prepare(rng.standard_normal((500, 8)), metric, "b")
    q = prepare(rng.standard_normal((20, 8)), metric, "q")
    d, ids = exact_knn(base, q, 10, metric, batch=7, progress=False)
    for j in range(20):
        s = ((base - q[j]) ** 2).sum(1) if metric == "l2" else base @ q[j]
        order = np.argsort(s if metric == "l2" else -s, kind="stable")[:10]
        assert ids[j].tolist() == order.tolist()
        np.testing.assert_allclose(d[j], s[order], rtol=1e-4, atol=1e-4)


def test_ground_truth_cache_round_trip_and_corruption(tmp_path):
    rng = np.random.default_rng(4)
    base, q = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((10, 8)).astype(np.float32)
    d1, i1 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    (entry,) = tmp_path.glob("*.npz")
    d2, i2 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    np.testing.assert_array_equal(i1, i2)
    entry.write_bytes(entry.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="fails its checksum"):
        d3, i3 = ground_truth(base, q, "l2", k=50, cache=tmp_path, progress=False)
    np.testing.assert_array_equal(i1, i3)


def test_metric_registry_has_directions():
    assert METRICS["recall"].direction == "higher" and METRICS["p99_ms"].direction == "lower"
    assert all(m.description and callable(m.function) for m in METRICS.values())
