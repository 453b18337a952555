"""LanceDB backend on real tables on disk: distances in the index convention, recall against brute force,
query parameters swept without rebuilding, pre-/post-filtering, save/load, sizes and clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from lancedb.background_loop import LOOP

from workbench.errors import DatasetError, IndexSpecError, QueryError
from workbench.errors import DatabaseError
from workbench.index.lancedb import LancedbIndex, dir_bytes, parse_build
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import exact_topk, pair_distances, prepare
from workbench.vectors.recall import recall_ties

K = 10


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=3000, dim=32, n_queries=50, n_clusters=30, seed=3, metric="cosine",
                              spread=1.0)


@pytest.fixture(scope="module")
def truth(vs):
    return exact_topk(vs.base, vs.queries, K, "cosine")


def recall(vs, ids, gd, allowed=None):
    return recall_ties(vs.base, vs.queries, ids, gd, K, "cosine", allowed).mean()


@pytest.fixture(scope="module")
def pq(vs, tmp_path_factory):
    index = LancedbIndex("IVF_PQ", "cosine", uri=tmp_path_factory.mktemp("pq"), num_partitions=8, num_sub_vectors=8)
    index.build(vs.base)
    return index


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_is_brute_force_in_the_index_convention(metric, tmp_path):
    rng = np.random.default_rng(1)
    base, queries = rng.normal(size=(3000, 32)).astype(np.float32), rng.normal(size=(30, 32)).astype(np.float32)
    index = LancedbIndex("exact", metric, uri=tmp_path)
    index.build(base)
    d, ids = index.search(queries, K)
    b, q = prepare(base, metric, "b"), prepare(queries, metric, "q")
    gd, gi = exact_topk(b, q, K, metric)
    np.testing.assert_array_equal(ids, gi)
    # similarity (1 - LanceDB's cosine/dot distance) and squared L2 (what LanceDB returns for l2)
    np.testing.assert_allclose(d, pair_distances(b, q, ids, metric), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d, gd, rtol=1e-5, atol=1e-4)
    assert index.size_bytes() == dir_bytes(tmp_path / "vectors.lance") > base.nbytes
    assert index.effective_query_params() == {}


def test_ivf_pq_recall_grows_with_nprobes_and_refine(vs, truth, pq):
    gd, _ = truth
    with_refine = [recall(vs, pq.search(vs.queries, K, nprobes=p, refine_factor=10)[1], gd) for p in (1, 2, 4, 8)]
    assert all(b >= a - 0.02 for a, b in itertools.pairwise(with_refine)), with_refine
    assert with_refine[-1] >= 0.95 and with_refine[0] < with_refine[-1]
    assert recall(vs, pq.search(vs.queries, K, nprobes=8)[1], gd) < with_refine[-1]   # PQ codes alone are lossy
    d, ids = pq.search(vs.queries, K, nprobes=8, refine_factor=10)               # refined: exact distances
    np.testing.assert_allclose(d, pair_distances(vs.base, vs.queries, ids, "cosine"), atol=1e-5)
    assert pq.effective_query_params(refine_factor=3) == {"nprobes": 20, "refine_factor": 3}
    assert pq.build_stats["index_bytes"] > 0 and pq.build_stats["load_rows_per_s"] > 0


def test_ivf_hnsw_sq_and_ivf_flat(vs, truth, tmp_path):
    gd, _ = truth
    hnsw = LancedbIndex("IVF_HNSW_SQ", "cosine", uri=tmp_path / "h", num_partitions=4, m=16, ef_construction=100)
    hnsw.build(vs.base)
    assert recall(vs, hnsw.search(vs.queries, K, nprobes=4, ef=10)[1], gd) <= \
        recall(vs, hnsw.search(vs.queries, K, nprobes=4, ef=100)[1], gd)
    assert recall(vs, hnsw.search(vs.queries, K, nprobes=4, ef=100, refine_factor=4)[1], gd) >= 0.95
    flat = LancedbIndex("IVF_FLAT", "cosine", uri=tmp_path / "f", num_partitions=8)
    flat.build(vs.base)
    assert recall(vs, flat.search(vs.queries, K, nprobes=8)[1], gd) == 1.0     # every partition: exact
    assert recall(vs, flat.search(vs.queries, K, nprobes=1)[1], gd) < 1.0


def test_searcher_is_search_one_row_at_a_time(vs, pq):
    q = pq.prepare_queries(vs.queries[:5])
    one = pq.searcher(K, nprobes=4, refine_factor=2)
    _, ids = pq.search(q, K, nprobes=4, refine_factor=2)
    np.testing.assert_array_equal(np.stack([one(q[i:i + 1]) for i in range(5)]), ids)
    allowed = np.arange(0, 3000, 7)
    pre = pq.searcher(K, allowed=allowed, nprobes=8)
    np.testing.assert_array_equal(pre(q[:1]), pq.search(q[:1], K, allowed=allowed, nprobes=8)[1][0])


def test_prefilter_is_exact_on_the_subset(vs, tmp_path):
    index = LancedbIndex("exact", "cosine", uri=tmp_path)
    index.build(vs.base)
    rng = np.random.default_rng(5)
    for allowed in (np.sort(rng.choice(3000, 150, replace=False)), np.array([4, 1000, 2999])):
        d, ids = index.search(vs.queries, K, allowed=allowed)
        gd, gi = exact_topk(vs.base, vs.queries, K, "cosine", allowed=allowed)
        np.testing.assert_array_equal(ids, gi)                     # fewer than k allowed: -1 slots
        np.testing.assert_allclose(d, gd, atol=1e-5)
    assert index.size_bytes() > index.build_stats["table_bytes"]    # the filter columns are on disk


def test_prefilter_under_ivf_searches_only_the_probed_partitions(vs, pq):
    allowed = np.sort(np.random.default_rng(6).choice(3000, 30, replace=False))      # 1%
    _, few = pq.search(vs.queries, K, allowed=allowed, nprobes=1)
    _, every = pq.search(vs.queries, K, allowed=allowed, nprobes=8)
    assert np.isin(few[few >= 0], allowed).all() and np.isin(every, allowed).all()
    assert ((few >= 0).sum(axis=1) < K).mean() > 0.5 and (every >= 0).all()


def test_postfilter_comes_back_short_as_lancedb_postfilter_does(vs, tmp_path):
    index = LancedbIndex("exact", "cosine", uri=tmp_path)
    index.build(vs.base)
    allowed = np.sort(np.random.default_rng(7).choice(3000, 30, replace=False))      # 1%
    _, ids = index.search(vs.queries, K, allowed=allowed, filter_mode="post", overfetch=1)
    short = ((ids >= 0).sum(axis=1) < K).mean()
    print(f"post-filter at 1% selectivity, overfetch 1: {short:.0%} of queries returned fewer than {K}")
    assert short > 0.9 and np.isin(ids[ids >= 0], allowed).all()
    flt = index._make_filter(allowed, "pre")
    for i, row in enumerate(index.prepare_queries(vs.queries[:10])):
        native = LOOP.run(index._query(row, K, {}, None).where(flt).postfilter().to_arrow())
        np.testing.assert_array_equal(index._ids(native["_rowid"].to_numpy()), ids[i][ids[i] >= 0])
    _, more = index.search(vs.queries, K, allowed=allowed, filter_mode="post", overfetch=100)
    assert ((more >= 0).sum(axis=1) < K).mean() < short


def test_save_load_round_trip(vs, tmp_path):
    index = LancedbIndex("IVF_PQ", "cosine", num_partitions=8, num_sub_vectors=8)   # owns a temp dir
    index.build(vs.base)
    owned = index.uri
    d, ids = index.search(vs.queries, K, nprobes=3, refine_factor=2)
    size = index.size_bytes()
    index.save(tmp_path / "saved")
    index.save(tmp_path / "saved")                                 # replaces a saved index whole
    index.close()
    assert not owned.exists()
    loaded = LancedbIndex.load(tmp_path / "saved")
    d2, ids2 = loaded.search(vs.queries, K, nprobes=3, refine_factor=2)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(d, d2)
    assert loaded.label == "lancedb:IVF_PQ,num_partitions=8,num_sub_vectors=8" and loaded.size_bytes() == size
    loaded.close()
    assert (tmp_path / "saved" / "vectors.lance").is_dir()       # a loaded index does not own its directory
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="not a saved LanceDB index"):
        LancedbIndex.load(tmp_path / "other")
    again = LancedbIndex.load(tmp_path / "saved")
    with pytest.raises(DatasetError, match="exists and is not a saved LanceDB index"):
        again.save(tmp_path / "other")
    LOOP.run(again.raw.delete("id = 5"))                          # changed outside the workbench
    with pytest.raises(DatasetError, match="does not hold ids 0..2999"):
        LancedbIndex.load(tmp_path / "saved")


def test_given_uri_is_kept_and_rebuilt_in_place(tmp_path):
    index = LancedbIndex("exact", "l2", uri=tmp_path)
    index.build(np.ones((20, 4), np.float32))
    allowed = np.array([2, 3])
    index.search(np.zeros((1, 4)), 1, allowed=allowed)
    index.build(np.arange(40, dtype=np.float32).reshape(10, 4))   # replaces the table (and its filter columns)
    assert index.ntotal == 10 and index.search(np.zeros((1, 4)), 1)[1][0, 0] == 0
    assert index.search(np.zeros((1, 4)), 1, allowed=allowed)[1][0, 0] == 2
    index.close()
    assert (tmp_path / "vectors.lance").is_dir()
    with pytest.raises(QueryError, match="has not been built"):
        index.search(np.zeros((1, 4)), 1)


def test_nan_is_refused_before_loading(tmp_path):
    x = np.ones((100, 8), np.float32)
    x[7, 3] = np.nan
    with pytest.raises(QueryError, match="row 7, column 3"):
        LancedbIndex("exact", "l2", uri=tmp_path).build(x)
    assert not (tmp_path / "vectors.lance").exists()


def test_parse_build_and_labels():
    build = parse_build("IVF_PQ,num_partitions=64,num_sub_vectors=16", "lancedb:IVF_PQ,...")
    assert build == {"index_type": "IVF_PQ", "num_partitions": 64, "num_sub_vectors": 16}
    assert LancedbIndex(metric="l2", **build).label == "lancedb:IVF_PQ,num_partitions=64,num_sub_vectors=16"
    assert LancedbIndex("IVF_PQ", num_sub_vectors=16, num_partitions=64).label == \
        "lancedb:IVF_PQ,num_partitions=64,num_sub_vectors=16"
    assert parse_build("exact", "lancedb:exact") == {"index_type": "exact"}
    assert LancedbIndex(**parse_build("IVF_HNSW_SQ", "s")).family == "lancedb:IVF_HNSW_SQ"


@pytest.mark.parametrize("body, message", [
    ("HNSW", "unknown LanceDB index type 'HNSW'"),
    ("IVF_PQ,m=16", "IVF_PQ takes no build parameter 'm'"),
    ("exact,num_partitions=4", "exact takes no build parameter"),
    ("IVF_PQ,num_partitions=0", "num_partitions must be a positive integer, got 0"),
    ("IVF_PQ,num_partitions=x", "num_partitions must be a positive integer, got 'x'"),
    ("IVF_PQ,num_partitions", "expected name=<int>"),
    ("IVF_PQ,num_bits=5", "num_bits must be 4 or 8"),
    ("IVF_HNSW_SQ,m=2", "m must be at least 4"),
    ("IVF_FLAT,num_partitions=2,num_partitions=3", "given twice"),
])
def test_bad_build_parameters(body, message):
    with pytest.raises(IndexSpecError, match=message):
        parse_build(body, f"lancedb:{body}")


def test_bad_builds_and_queries(vs, pq, tmp_path):
    with pytest.raises(IndexSpecError, match="num_sub_vectors=5 must divide the dimension 32"):
        LancedbIndex("IVF_PQ", "l2", uri=tmp_path, num_sub_vectors=5).build(vs.base)
    with pytest.raises(IndexSpecError, match="num_partitions=64 .* 3000 vectors allow at most 11"):
        LancedbIndex("IVF_PQ", "l2", uri=tmp_path, num_partitions=64).build(vs.base)
    with pytest.raises(IndexSpecError, match="ef do not apply to lancedb:IVF_PQ"):
        pq.search(vs.queries, K, ef=10)
    with pytest.raises(IndexSpecError, match="nprobes=2.5 .* must be an integer"):
        pq.search(vs.queries, K, nprobes=2.5)
    with pytest.raises(IndexSpecError, match="nprobes do not apply to lancedb:exact"):
        LancedbIndex("exact", "l2").effective_query_params(nprobes=2)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DatabaseError, match="LanceDB could not"):
        LancedbIndex("exact", "l2", uri=tmp_path / "file").build(vs.base)
