"""ScaNN wrapper: recall against exact search, distance convention, post-filter, save/load, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import DatasetError, IndexSpecError, QueryError, WorkbenchError
from workbench.index.scann import ScannIndex, default_leaves
from workbench.index.spec import parse_spec
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import exact_topk, prepare
from workbench.vectors.recall import recall_ties


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=3000, dim=32, n_queries=50, n_clusters=20, seed=3, metric="cosine")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_recall_against_exact_search(vs, metric):
    index = ScannIndex(leaves=50, reorder=100, metric=metric)
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, leaves_to_search=20, pre_reorder=200)
    base, q = prepare(vs.base, metric, "b"), prepare(vs.queries, metric, "q")
    gd, _ = exact_topk(base, q, 10, metric)
    assert recall_ties(base, q, i, gd, 10, metric).mean() >= 0.95
    # re-ordered scores are exact: similarity for cosine/ip, squared distance for l2
    expect = np.einsum("qkd,qd->qk", base[i], q) if metric != "l2" else ((base[i] - q[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, expect, rtol=1e-4, atol=1e-4)


def test_searcher_matches_search(vs):
    index = ScannIndex(leaves=40, reorder=50)
    index.build(vs.base)
    _, ids = index.search(vs.queries[:5], 10, leaves_to_search=8)
    one = index.searcher(10, leaves_to_search=8)
    rows = index.prepare_queries(vs.queries[:5])
    assert all(list(one(rows[j:j + 1])) == list(ids[j]) for j in range(5))


def test_save_load_round_trip_identical(vs, tmp_path):
    index = ScannIndex(leaves=40, reorder=60)
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, leaves_to_search=5)
    index.save(tmp_path / "s.idx")
    loaded = ScannIndex.load(tmp_path / "s.idx")
    d2, i2 = loaded.search(vs.queries, 10, leaves_to_search=5)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(d, d2)
    assert loaded.size_bytes() == index.size_bytes() > 0 and loaded.label == index.label
    raw = (tmp_path / "s.idx").read_bytes()
    (tmp_path / "s.idx").write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match="checksum"):
        ScannIndex.load(tmp_path / "s.idx")


def test_post_filter_and_default_leaves(vs):
    index = parse_spec("scann:reorder=50").make("cosine")
    index.build(vs.base)
    assert index.effective_query_params()["leaves_to_search"] == default_leaves(3000) // 10
    allowed = np.arange(0, 3000, 4)
    _, ids = index.search(vs.queries, 10, allowed=allowed, filter_mode="pre")
    assert np.isin(ids[ids >= 0], allowed).all()


@pytest.mark.parametrize("text, needle", [
    ("scann:leaves=0", "leaves='0'"), ("scann:leaves=abc", "leaves='abc'"), ("scann:threshold=1.5", "threshold=1.5"),
    ("scann:bogus=3", "'bogus=3'"), ("scann:leaves=10?leaves_to_search=2.5", "leaves_to_search"),
    ("scann:leaves=10?pre_reorder=nan", "pre_reorder"),
])
def test_bad_parameters_name_the_parameter(text, needle):
    with pytest.raises(IndexSpecError, match=needle) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_more_leaves_than_vectors_and_nan_refused(vs):
    with pytest.raises(IndexSpecError, match="leaves=5000 but only 3000"):
        ScannIndex(leaves=5000).build(vs.base)
    bad = vs.base.copy()
    bad[7, 3] = np.nan
    with pytest.raises(WorkbenchError, match="(?i)nan"):
        ScannIndex(leaves=20).build(bad)
    index = ScannIndex(leaves=20)
    index.build(vs.base)
    q = vs.queries[:2].copy()
    q[1, 0] = np.nan
    with pytest.raises(WorkbenchError, match="(?i)nan"):
        index.search(q, 10)
    with pytest.raises(QueryError, match="k=4000"):
        index.search(vs.queries, 4000)
