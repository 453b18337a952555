"""Filtering as an index capability: pre-filter (the library's own), post-filter (the base class's
over-fetch), the exact index's subset, and the searcher the harness times agreeing with search."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.index.exact import ExactIndex
from workbench.index.faiss import FaissIndex
from workbench.index.hnswlib import HnswlibIndex
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import prepare

K = 10
MAKERS = {
    "exact": lambda m: ExactIndex(m),
    "faiss-flat": lambda m: FaissIndex("Flat", m),
    "faiss-ivf": lambda m: FaissIndex("IVF16,Flat", m),
    "faiss-hnsw": lambda m: FaissIndex("HNSW16,Flat", m),
    "hnswlib": lambda m: HnswlibIndex(M=8, ef_construction=60, metric=m),
}


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=1500, dim=24, n_queries=20, n_clusters=15, seed=4, metric="l2")


def brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int, allowed: np.ndarray) -> np.ndarray:
    """Independent reference in float64: mask disallowed ids, stable full argsort (ties to the smaller id)."""
    b, q = prepare(base, metric, "b").astype(np.float64), prepare(queries, metric, "q").astype(np.float64)
    key = ((q[:, None, :] - b[None]) ** 2).sum(-1) if metric == "l2" else -(q @ b.T)
    mask = np.zeros(len(b), bool)
    mask[allowed] = True
    key = np.where(mask, key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(key, order, 1) < np.inf, order, -1)


def searched_rows(index, queries, k, **kw) -> np.ndarray:
    """Ids from ``searcher`` one prepared row at a time, padded with -1 as the harness does."""
    search = index.searcher(k, **kw)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for i, row in enumerate(index.prepare_queries(queries)):
        r = np.asarray(search(row[None, :])).reshape(-1)
        out[i, :r.size] = r
    return out


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("n_allowed", [3, 57, 1500])
def test_exact_index_subset_equals_brute_force(vs, metric, n_allowed):
    allowed = np.sort(np.random.default_rng(n_allowed).choice(1500, n_allowed, replace=False))
    index = ExactIndex(metric)
    index.build(vs.base)
    d, ids = index.search(vs.queries, K, allowed=allowed)
    np.testing.assert_array_equal(ids, brute_force(vs.base, vs.queries, metric, K, allowed))
    assert (d[ids < 0] == (np.inf if metric == "l2" else -np.inf)).all()
    np.testing.assert_array_equal(searched_rows(index, vs.queries, K, allowed=allowed), ids)


def test_exact_index_breaks_ties_by_id_and_round_trips(tmp_path):
    base = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    index = ExactIndex("ip")
    index.build(base)
    assert index.search(np.array([[1, 0]], np.float32), 2)[1].tolist() == [[0, 1]]
    index.save(tmp_path / "e.idx")
    loaded = ExactIndex.load(tmp_path / "e.idx")
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    assert loaded.size_bytes() == base.nbytes and loaded.label == "exact"


@pytest.mark.parametrize("name", list(MAKERS))
def test_prefilter_returns_only_allowed_ids_and_searcher_agrees(vs, name):
    index = MAKERS[name]("l2")
    index.build(vs.base)
    allowed = np.arange(2, 1500, 7)
    params = {"nprobe": 4} if name == "faiss-ivf" else {"ef": 40} if name == "hnswlib" else {}
    _, ids = index.search(vs.queries, K, allowed=allowed, **params)
    assert np.isin(ids[ids >= 0], allowed).all()
    np.testing.assert_array_equal(searched_rows(index, vs.queries, K, allowed=allowed, **params), ids)
    if name in ("exact", "faiss-flat"):      # scanning every allowed vector is exact
        np.testing.assert_array_equal(ids, brute_force(vs.base, vs.queries, "l2", K, allowed))


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("overfetch", [1, 3])
def test_postfilter_keeps_the_allowed_ids_of_the_overfetched_list_in_order(vs, name, overfetch):
    index = MAKERS[name]("cosine")
    index.build(vs.base)
    allowed = np.flatnonzero(np.random.default_rng(1).random(1500) < 0.3)
    _, fetched = index.search(vs.queries, K * overfetch)
    d, ids = index.search(vs.queries, K, allowed=allowed, filter_mode="post", overfetch=overfetch)
    for row, top in zip(ids, fetched):
        expected = top[np.isin(top, allowed)][:K]
        assert row[:expected.size].tolist() == expected.tolist() and (row[expected.size:] == -1).all()
    assert np.isneginf(d[ids < 0]).all()
    np.testing.assert_array_equal(
        searched_rows(index, vs.queries, K, allowed=allowed, filter_mode="post", overfetch=overfetch), ids)


def test_postfilter_comes_back_short_below_one_over_overfetch(vs):
    index = FaissIndex("Flat", "cosine")
    index.build(vs.base)
    allowed = np.arange(0, 1500, 20)   # 5% of the ids: about K * 0.05 survive an over-fetch of 1
    _, post = index.search(vs.queries, K, allowed=allowed, filter_mode="post", overfetch=1)
    _, pre = index.search(vs.queries, K, allowed=allowed)
    assert ((post >= 0).sum(axis=1) < K).all() and ((pre >= 0).sum(axis=1) == K).all()


@pytest.mark.parametrize("name", list(MAKERS))
def test_fewer_allowed_ids_than_k_leave_missing_slots(vs, name):
    index = MAKERS[name]("l2")
    index.build(vs.base)
    params = {"nprobe": 16} if name == "faiss-ivf" else {}     # IVF sees them only in the lists it scans
    d, ids = index.search(vs.queries[:3], K, allowed=np.array([4, 3]), **params)
    assert ids.shape == (3, K) and np.isin(ids[ids >= 0], [3, 4]).all()
    assert (ids[:, 2:] == -1).all() and np.isinf(d[ids < 0]).all()
    if name != "faiss-hnsw":   # faiss HNSW filters its beam's results, not its walk: it may find neither
        assert (np.sort(ids[:, :2], axis=1) == [3, 4]).all()
