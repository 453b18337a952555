"""usearch wrapper: recall against exact search per dtype, distance convention, save/load, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import IndexSpecError, WorkbenchError
from workbench.index.spec import parse_spec
from workbench.index.usearch import UsearchIndex
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import exact_topk, prepare
from workbench.vectors.recall import recall_ties


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=3000, dim=32, n_queries=50, n_clusters=20, seed=4, metric="cosine")


@pytest.mark.parametrize("metric, dtype, floor", [("cosine", "f32", 0.98), ("ip", "f32", 0.98),
                                                  ("l2", "f32", 0.98), ("cosine", "f16", 0.97),
                                                  ("cosine", "i8", 0.85)])
def test_recall_against_exact_search(vs, metric, dtype, floor):
    index = UsearchIndex(M=16, ef_construction=128, dtype=dtype, metric=metric)
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, ef=128)
    base, q = prepare(vs.base, metric, "b"), prepare(vs.queries, metric, "q")
    gd, _ = exact_topk(base, q, 10, metric)
    assert recall_ties(base, q, i, gd, 10, metric).mean() >= floor
    if dtype == "f32":   # similarity for cosine/ip (not usearch's 1 - dot), squared distance for l2
        expect = np.einsum("qkd,qd->qk", base[i], q) if metric != "l2" else ((base[i] - q[:, None]) ** 2).sum(-1)
        np.testing.assert_allclose(d, expect, rtol=1e-4, atol=1e-4)


def test_searcher_matches_search_and_post_filter(vs):
    index = parse_spec("usearch:M=8,ef_construction=64").make("cosine")
    index.build(vs.base)
    _, ids = index.search(vs.queries[:5], 10, ef=32)
    one = index.searcher(10, ef=32)
    rows = index.prepare_queries(vs.queries[:5])
    assert all(list(one(rows[j:j + 1])) == list(ids[j]) for j in range(5))
    allowed = np.arange(1, 3000, 5)
    _, ids = index.search(vs.queries, 10, allowed=allowed, ef=64)
    assert np.isin(ids[ids >= 0], allowed).all()


def test_save_load_round_trip_identical(vs, tmp_path):
    index = UsearchIndex(M=8, ef_construction=64, dtype="f16")
    index.build(vs.base)
    d, i = index.search(vs.queries, 10, ef=40)
    index.save(tmp_path / "u.idx")
    loaded = UsearchIndex.load(tmp_path / "u.idx")
    d2, i2 = loaded.search(vs.queries, 10, ef=40)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(d, d2)
    assert loaded.size_bytes() == index.size_bytes() > 0 and loaded.label == index.label


@pytest.mark.parametrize("text, needle", [
    ("usearch:M=0", "M='0'"), ("usearch:ef_construction=x", "ef_construction='x'"),
    ("usearch:dtype=f64", "dtype='f64'"), ("usearch:connectivity=4", "'connectivity=4'"),
    ("usearch:M=8?ef=1.5", "ef"), ("usearch:M=8?ef=inf", "ef"),
])
def test_bad_parameters_name_the_parameter(text, needle):
    with pytest.raises(IndexSpecError, match=needle) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_i8_needs_cosine_and_nan_refused(vs):
    with pytest.raises(IndexSpecError, match="dtype=i8 .* not l2"):
        parse_spec("usearch:dtype=i8").make("l2")
    bad = vs.base.copy()
    bad[11, 0] = np.nan
    with pytest.raises(WorkbenchError, match="(?i)nan"):
        UsearchIndex().build(bad)
