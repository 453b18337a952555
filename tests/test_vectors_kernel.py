"""The vector kernel (workbench.vectors.kernel, .recall) against brute force written out here.

The reference for exact top-k is the definition, in plain Python over float64: score every allowed
candidate (l2: sum of squared differences, smaller is better; ip/cosine: dot product of the prepared
vectors, larger is better), sort by (distance, id), keep k, fill the rest with id -1. On integer-valued
vectors every float32 sum the kernel does is exact, so ids and distances must match it exactly, ties
included; cosine (normalised, so not integer) is checked within a tolerance, and its selection exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import DatasetError, DimensionError, DuplicateResultError, QueryError
from workbench.vectors.kernel import (
    METRICS,
    as_matrix,
    check_dim,
    distances,
    exact_topk,
    normalize,
    pair_distances,
    prepare,
    top_k_of_scores,
)
from workbench.vectors.recall import TIE_EPS, check_no_duplicates, recall_ids, recall_ties


def naive_topk(base, queries, k, metric, allowed=None):
    """(distances, ids) by the definition: a Python sort of (distance, id) over the allowed candidates."""
    cand = range(len(base)) if allowed is None else [int(i) for i in allowed]
    fill = np.inf if metric == "l2" else -np.inf
    dist, ids = [], []
    for q in np.asarray(queries, np.float64):
        scored = []
        for i in cand:
            b = np.asarray(base[i], np.float64)
            d = float(((b - q) ** 2).sum()) if metric == "l2" else float(b @ q)
            scored.append((d if metric == "l2" else -d, i))
        best = sorted(scored)[:k]
        dist.append([d if metric == "l2" else -d for d, _ in best] + [fill] * (k - len(best)))
        ids.append([i for _, i in best] + [-1] * (k - len(best)))
    return np.array(dist), np.array(ids, dtype=np.int64)


@st.composite
def search_case(draw, metric):
    """Integer-valued base with duplicated rows, queries, k (may exceed the candidates), maybe ``allowed``."""
    n, d = draw(st.integers(1, 25)), draw(st.integers(1, 5))
    values = st.integers(-3, 3)
    rows = draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=n, max_size=n))
    copies = draw(st.lists(st.integers(0, n - 1), max_size=6))           # duplicated vectors: exact ties
    rows = rows + [rows[i] for i in copies]
    queries = draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=1, max_size=4))
    base, q = np.array(rows, np.float32), np.array(queries, np.float32)
    if metric == "cosine":                                             # cosine needs a direction
        base[~base.any(axis=1), 0] = 1
        q[~q.any(axis=1), 0] = 1
    allowed = None
    if draw(st.booleans()):
        allowed = np.array(sorted(draw(st.sets(st.integers(0, len(base) - 1), min_size=1))), dtype=np.int64)
    k = draw(st.integers(1, len(base) + 3))
    return prepare(base, metric, "base"), prepare(q, metric, "queries"), k, allowed


@pytest.mark.parametrize("metric", ["l2", "ip"])
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_exact_topk_is_the_naive_sort_exactly(metric, data):
    base, q, k, allowed = data.draw(search_case(metric))
    dist, ids = exact_topk(base, q, k, metric, allowed=allowed, batch=3)
    ref_d, ref_i = naive_topk(base, q, k, metric, allowed)
    assert ids.tolist() == ref_i.tolist()            # same ids in the same order: ties to the smaller id
    np.testing.assert_array_equal(dist, ref_d)       # exact on integers; missing slots +inf (l2) / -inf


@settings(max_examples=150, deadline=None)
@given(search_case("cosine"))
def test_exact_topk_cosine_is_the_naive_sort_of_its_similarities(case):
    """Cosine similarities of normalised vectors are not exact in float32 (a matrix product may even round
    two identical rows differently by an ulp), so: the similarities match the float64 definition within
    rounding, and the selection is exactly the naive (similarity desc, id asc) sort of the kernel's own."""
    base, q, k, allowed = case
    dist, ids = exact_topk(base, q, k, "cosine", allowed=allowed)       # one batch: the same product as below
    ref_d, _ = naive_topk(base, q, k, "cosine", allowed)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)                  # missing slots: -inf on both sides
    cand = np.arange(len(base)) if allowed is None else allowed
    sims = distances(q, base[cand], "cosine")
    for r in range(len(q)):
        order = sorted(range(len(cand)), key=lambda c: (-float(sims[r, c]), int(cand[c])))[:k]
        assert ids[r].tolist() == [int(cand[c]) for c in order] + [-1] * (k - len(order))


def test_exact_topk_ties_and_allowed_by_hand():
    line = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0], [3.0]], dtype=np.float32)
    q0 = np.zeros((1, 1), np.float32)
    # squared distances 0, 1, 1, 4, 4, 9: ties 1/2 and 3/4 go to the smaller id
    d, i = exact_topk(line, q0, 4, "l2")
    assert i.tolist() == [[0, 1, 2, 3]] and d.tolist() == [[0, 1, 1, 4]]
    # only 2 of the 3 asked-for candidates are allowed: the third slot is missing
    d, i = exact_topk(line, q0, 3, "l2", allowed=np.array([2, 4]))
    assert i.tolist() == [[2, 4, -1]] and d.tolist() == [[1, 4, np.inf]]
    d, i = exact_topk(line, q0, 2, "ip", allowed=np.array([0, 3, 5]))   # all dots 0: ids in order
    assert i.tolist() == [[0, 3]] and d.tolist() == [[0, 0]]


def test_top_k_of_scores_breaks_ties_by_the_smaller_position():
    s = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert top_k_of_scores(s, 3).tolist() == [[1, 2, 4]]
    assert top_k_of_scores(s, 5).tolist() == [[1, 2, 4, 3, 0]]
    assert top_k_of_scores(s, 9).tolist() == [[1, 2, 4, 3, 0]]       # k beyond the row: every position


def test_pair_distances_recomputes_and_marks_missing():
    base = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(pair_distances(base, q, np.array([[1, 2, -1]]), "l2"), [[20.0, 0.0, np.nan]])
    np.testing.assert_array_equal(pair_distances(base, q, np.array([[1, -1]]), "ip"), [[3.0, np.nan]])


# -- normalize and validation ------------------------------------------------------------------

@given(st.integers(1, 8), st.integers(1, 6), st.sets(st.integers(0, 7)), st.integers(0, 2**31 - 1))
def test_normalize_refuses_zero_rows_and_names_the_first(n, d, zero_rows, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) + 0.1
    zero = sorted(r for r in zero_rows if r < n)
    x[zero] = 0
    if zero:
        with pytest.raises(QueryError, match=rf"^v: {len(zero)} zero vector\(s\) .* first at row {zero[0]}$"):
            normalize(x, "v")
    else:
        u = normalize(x, "v")
        assert u.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(u * np.linalg.norm(x, axis=1, keepdims=True), x, rtol=1e-5, atol=1e-6)


def test_prepare_normalises_for_cosine_only():
    x = np.array([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(prepare(x, "cosine", "x"), [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    for metric in ("ip", "l2"):
        np.testing.assert_array_equal(prepare(x, metric, "x"), x)
        assert prepare(np.zeros((1, 2)), metric, "x").tolist() == [[0.0, 0.0]]   # zero rows fine without cosine
    assert set(METRICS) == {"cosine", "ip", "l2"}


def test_as_matrix_messages_name_the_row_and_column():
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(QueryError, match=r"^base: non-finite value nan at row 2, column 1$"):
        as_matrix(x, "base")
    x[2, 1] = -np.inf
    with pytest.raises(QueryError, match=r"^base: non-finite value -inf at row 2, column 1$"):
        as_matrix(x, "base")
    big = np.ones((2, 2))
    big[1, 0] = 1e39
    with pytest.raises(QueryError, match=r"^base: value 1e\+39 at row 1, column 0 overflows float32$"):
        as_matrix(big, "base")
    with pytest.raises(DimensionError, match=r"^queries: dimension 3, expected 4$"):
        as_matrix(np.ones((2, 3)), "queries", dim=4)
    with pytest.raises(QueryError, match=r"^q: expected a 2-D array \(n, d\), got shape \(2, 2, 2\)$"):
        as_matrix(np.ones((2, 2, 2)), "q")
    with pytest.raises(QueryError, match=r"^q: is empty \(0 vectors\)$"):
        as_matrix(np.ones((0, 2)), "q")
    with pytest.raises(QueryError, match=r"^q: dtype <U1 is not numeric$"):
        as_matrix(np.array([["a"]]), "q")
    with pytest.raises(DatasetError, match=r"^ids: ids must be integers"):
        as_matrix(np.array([[1.5]]), "ids", dtype=np.int64, error=DatasetError)
    row = as_matrix([1, 2, 3], "q", dim=3)                        # one vector of the right length is a row
    assert row.shape == (1, 3) and row.dtype == np.float32 and row.flags.c_contiguous


def test_check_dim_names_both_numbers():
    check_dim("v", np.zeros((2, 4)), 4)
    with pytest.raises(DimensionError, match=r"^query vectors: dimension 383, expected 384$"):
        check_dim("query vectors", np.zeros((2, 383), np.float32), 384)
    with pytest.raises(DimensionError, match=r"^codes: dimension 3, base codes have 4$"):
        check_dim("codes", 3, 4, "base codes have")


# -- recall ------------------------------------------------------------------------------------
# The points of LINE lie on a line; the query sits at 0. Squared distances: id 0: 0, ids 1 and 2: 1,
# ids 3 and 4: 4, id 5: 9 (Euclidean 0, 1, 1, 2, 2, 3).
LINE = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0], [3.0]], dtype=np.float32)
Q0 = np.array([[0.0]], dtype=np.float32)


def test_ties_at_the_kth_distance_count():
    gd, gi = exact_topk(LINE, Q0, 3, "l2")
    assert gi.tolist() == [[0, 1, 2]]
    # true top-3 distances 0, 1, 1: returning the other tie (id 2 for id 1) is just as good
    assert recall_ties(LINE, Q0, np.array([[0, 2, 1]]), gd, 3, "l2")[0] == 1.0
    # id 3 (distance 2) is beyond the 3rd true distance 1 + 1e-3
    assert recall_ties(LINE, Q0, np.array([[0, 1, 3]]), gd, 3, "l2")[0] == pytest.approx(2 / 3)
    # k=4: the 4th true distance is 2, so ids 3 and 4 are interchangeable, id 5 is not
    gd4, gi4 = exact_topk(LINE, Q0, 4, "l2")
    assert recall_ties(LINE, Q0, np.array([[0, 1, 2, 4]]), gd4, 4, "l2")[0] == 1.0
    assert recall_ids(np.array([[0, 1, 2, 4]]), gi4, 4)[0] == 0.75     # plain id overlap misses the tie
    assert recall_ties(LINE, Q0, np.array([[0, 1, 2, 5]]), gd4, 4, "l2")[0] == 0.75


def test_tie_slack_is_1e_3_in_euclidean_units():
    assert TIE_EPS == 1e-3
    base = np.array([[0.0], [1.0], [1.0009], [1.0011]], dtype=np.float32)
    gd, _ = exact_topk(base, Q0, 2, "l2")   # true: 0, 1
    assert recall_ties(base, Q0, np.array([[0, 2]]), gd, 2, "l2")[0] == 1.0     # 1.0009 <= 1 + 1e-3
    assert recall_ties(base, Q0, np.array([[0, 3]]), gd, 2, "l2")[0] == 0.5     # 1.0011 >  1 + 1e-3


def test_ties_in_inner_product_and_missing_results():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    q = np.array([[1.0, 1.0]], dtype=np.float32)             # dots 1, 1, 1, 1: everything ties
    gd, _ = exact_topk(base, q, 2, "ip")
    assert recall_ties(base, q, np.array([[3, 2]]), gd, 2, "ip")[0] == 1.0
    assert recall_ties(base, q, np.array([[3, -1]]), gd, 2, "ip")[0] == 0.5     # -1: no result


def test_recall_with_allowed_by_hand():
    allowed = np.array([1, 3, 5])                        # Euclidean distances 1, 2, 3
    gd, gi = exact_topk(LINE, Q0, 2, "l2", allowed=allowed)
    assert gi.tolist() == [[1, 3]]
    r = recall_ties(LINE, Q0, np.array([[3, 1], [1, 0], [1, 5], [1, 4]]), np.repeat(gd, 4, 0), 2, "l2",
                    allowed=allowed)
    # [3, 1]: both true. [1, 0]: id 0 is closer than anything but not allowed, so it does not count.
    # [1, 5]: id 5 at 3 > 2 + 1e-3. [1, 4]: id 4 ties id 3 at distance 2 but is not allowed.
    assert r.tolist() == [1.0, 0.5, 0.5, 0.5]
    assert recall_ids(np.array([[3, 1], [1, 0]]), np.repeat(gi, 2, 0), 2, allowed=allowed).tolist() == [1.0, 0.5]


def test_recall_when_fewer_ids_are_allowed_than_k():
    allowed = np.array([2, 4])                           # k=3 but only 2 can be returned: denominator 2
    gd, gi = exact_topk(LINE, Q0, 3, "l2", allowed=allowed)
    assert gi.tolist() == [[2, 4, -1]]
    found = np.array([[4, 2, -1], [2, -1, -1], [2, 1, -1]])
    # [4, 2, -1]: all of the 2 possible. [2, -1, -1]: one of 2. [2, 1, -1]: id 1 ties id 2 but is not allowed.
    assert recall_ties(LINE, Q0, found, np.repeat(gd, 3, 0), 3, "l2", allowed=allowed).tolist() == [1.0, 0.5, 0.5]
    assert recall_ids(found, np.repeat(gi, 3, 0), 3, allowed=allowed).tolist() == [1.0, 0.5, 0.5]


def test_a_tie_counts_for_recall_ties_but_not_recall_ids():
    allowed = np.array([1, 2, 3])
    gd, gi = exact_topk(LINE, Q0, 1, "l2", allowed=allowed)
    assert gi.tolist() == [[1]]                          # 1 and 2 tie at distance 1: the smaller id
    assert recall_ties(LINE, Q0, np.array([[2]]), gd, 1, "l2", allowed=allowed).tolist() == [1.0]
    assert recall_ids(np.array([[2]]), gi, 1, allowed=allowed).tolist() == [0.0]


def test_duplicate_ids_are_an_error_and_missing_ones_are_not():
    check_no_duplicates(np.array([[1, -1, -1]]))
    gd, _ = exact_topk(LINE, Q0, 3, "l2")
    with pytest.raises(DuplicateResultError, match="query 0: id 1 appears more than once"):
        recall_ties(LINE, Q0, np.array([[1, 0, 1]]), gd, 3, "l2")
    with pytest.raises(DuplicateResultError, match="query 1: id 2 appears more than once"):
        check_no_duplicates(np.array([[0, 1], [2, 2]]))
