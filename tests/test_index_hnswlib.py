"""hnswlib wrapper: its quirks (ef not saved, max(ef, k), 1 - dot, squared L2), filters, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.index.hnswlib import HnswlibIndex
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import exact_topk, prepare
from workbench.vectors.recall import recall_ties


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=2000, dim=32, n_queries=50, n_clusters=20, seed=2, metric="l2")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_distances_follow_the_index_convention(vs, metric):
    index = HnswlibIndex(M=16, ef_construction=100, metric=metric)
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, ef=200)
    base, q = prepare(vs.base, metric, "b"), prepare(vs.queries, metric, "q")
    gd, _ = exact_topk(base, q, 10, metric)
    assert recall_ties(base, q, i, gd, 10, metric).mean() >= 0.99
    # similarity (not hnswlib's 1 - dot) for cosine/ip, squared distance for l2
    expect = np.einsum("qkd,qd->qk", base[i], q) if metric != "l2" else ((base[i] - q[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, expect, rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_sets_ef_again(vs, tmp_path):
    index = HnswlibIndex(M=8, ef_construction=50, metric="cosine")
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, ef=20)
    index.save(tmp_path / "h.idx")
    loaded = HnswlibIndex.load(tmp_path / "h.idx")
    d2, i2 = loaded.search(vs.queries, 10, ef=20)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(d, d2)
    assert loaded.size_bytes() == index.size_bytes() > 0


def test_ef_below_k_still_returns_k(vs):
    index = HnswlibIndex(M=8, ef_construction=50, metric="l2")
    index.build(vs.base)
    _, ids = index.search(vs.queries, 20, ef=5)          # hnswlib uses max(ef, k)
    assert ids.shape == (50, 20) and (ids >= 0).all()


def test_allowed_filter(vs):
    index = HnswlibIndex(M=8, ef_construction=50, metric="l2")
    index.build(vs.base)
    allowed = np.arange(1, 2000, 5)
    _, ids = index.search(vs.queries, 10, allowed=allowed, ef=50)
    assert np.isin(ids, allowed).all()
    d, ids = index.search(vs.queries[:3], 10, allowed=np.array([3, 4]))
    assert (np.sort(ids[:, :2], axis=1) == [3, 4]).all() and (ids[:, 2:] == -1).all()
