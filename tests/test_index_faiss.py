"""faiss wrapper: factory strings, metrics end to end, per-call parameters, filters, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import IndexSpecError
from workbench.index.faiss import FaissIndex
from workbench.vectors.formats import synthetic_clusters
from workbench.vectors.kernel import exact_topk, prepare
from workbench.vectors.recall import recall_ties

FACTORIES = ["Flat", "IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8x4", "IVF16,PQ8x4,RFlat", "HNSW16,Flat", "HNSW16,SQ8",
             "OPQ4,IVF16,PQ4x4", "SQfp16"]


@pytest.fixture(scope="module")
def vs():
    return synthetic_clusters(n=2000, dim=32, n_queries=50, n_clusters=20, seed=1, metric="l2")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_is_exact_in_every_metric(vs, metric):
    index = FaissIndex("Flat", metric)
    index.build(vs.base)
    d, i = index.search(vs.queries, 10)
    base, q = prepare(vs.base, metric, "b"), prepare(vs.queries, metric, "q")
    gd, gi = exact_topk(base, q, 10, metric)
    assert recall_ties(base, q, i, gd, 10, metric).mean() == 1.0
    np.testing.assert_allclose(d, gd, rtol=1e-4, atol=1e-4)    # similarity for cosine/ip, squared L2 for l2


@pytest.mark.parametrize("factory", FACTORIES)
def test_every_factory_builds_searches_and_round_trips(vs, factory, tmp_path):
    index = FaissIndex(factory, "cosine")
    index.build(vs.base)
    d, i = index.search(vs.queries, 10)
    assert i.shape == (50, 10) and (i >= 0).all()
    assert index.size_bytes() > 0 and index.ntotal == 2000
    index.save(tmp_path / "x.idx")
    loaded = FaissIndex.load(tmp_path / "x.idx")
    d2, i2 = loaded.search(vs.queries, 10)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(d, d2)


def test_query_parameters_are_per_call_and_do_not_leak(vs):
    index = FaissIndex("IVF16,Flat", "l2")
    index.build(vs.base)
    _, default = index.search(vs.queries, 10)
    _, wide = index.search(vs.queries, 10, nprobe=16)
    _, again = index.search(vs.queries, 10)
    np.testing.assert_array_equal(default, again)
    assert index.effective_query_params() == {"nprobe": 1}
    assert index.effective_query_params(nprobe=16) == {"nprobe": 16}
    gd, gi = exact_topk(vs.base, vs.queries, 10, "l2")
    assert recall_ties(vs.base, vs.queries, wide, gd, 10, "l2").mean() == 1.0   # all lists probed = exact


def test_refine_and_hnsw_parameters(vs):
    refine = FaissIndex("IVF16,PQ8x4,RFlat", "l2")
    refine.build(vs.base)
    gd, _ = exact_topk(vs.base, vs.queries, 10, "l2")
    r1 = recall_ties(vs.base, vs.queries, refine.search(vs.queries, 10, nprobe=16, k_factor=1)[1], gd, 10, "l2")
    r8 = recall_ties(vs.base, vs.queries, refine.search(vs.queries, 10, nprobe=16, k_factor=8)[1], gd, 10, "l2")
    assert r8.mean() > r1.mean()
    hnsw = FaissIndex("HNSW16,Flat", "l2")
    hnsw.build(vs.base)
    assert hnsw.effective_query_params(efSearch=64) == {"efSearch": 64}
    with pytest.raises(IndexSpecError, match="nprobe do not apply to faiss:HNSW16,Flat"):
        hnsw.search(vs.queries, 10, nprobe=4)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16,Flat", "IVF16,PQ8x4,RFlat"])
def test_allowed_ids_prefilter(vs, factory):
    index = FaissIndex(factory, "l2")
    index.build(vs.base)
    allowed = np.arange(0, 2000, 3)
    params = {"nprobe": 16} if "IVF" in factory else {}
    _, ids = index.search(vs.queries, 10, allowed=allowed, **params)
    assert np.isin(ids[ids >= 0], allowed).all()
    flat = FaissIndex("Flat", "l2")
    flat.build(vs.base)
    d, ids = flat.search(vs.queries[:2], 5, allowed=[7, 11])
    assert sorted(ids[0, :2]) == [7, 11] and (ids[:, 2:] == -1).all() and np.isinf(d[:, 2:]).all()


def test_unknown_factory_string_is_named(vs):
    with pytest.raises(IndexSpecError, match="'IVF16,Bogus'"):
        FaissIndex("IVF16,Bogus", "l2").build(vs.base)
    with pytest.raises(IndexSpecError, match="at dimension 32"):
        FaissIndex("PQ7", "l2").validate(32)


def test_threads_are_set(vs):
    import faiss

    index = FaissIndex("Flat", "l2")
    index.set_threads(1)
    assert faiss.omp_get_max_threads() == 1


def test_opq_rounds_and_training_sample_are_build_parameters(vs, tmp_path):
    import faiss

    index = FaissIndex("OPQ4,IVF16,PQ4x4", "l2", train_size=1000, opq_niter=2)
    index.build(vs.base)
    opq = faiss.downcast_VectorTransform(faiss.downcast_index(index.raw).chain.at(0))
    assert opq.niter == 2 and index.build_params == {"factory": "OPQ4,IVF16,PQ4x4", "train_size": 1000,
                                                     "opq_niter": 2}
    index.save(tmp_path / "o.idx")
    assert FaissIndex.load(tmp_path / "o.idx").build_params == index.build_params


def test_hnsw_ef_construction_is_a_build_option(vs, tmp_path):
    from workbench.index.faiss import _hnsw
    from workbench.index.spec import parse_spec

    spec = parse_spec("faiss:HNSW16,SQ8,efConstruction=120?efSearch=32")
    assert spec.build == {"factory": "HNSW16,SQ8", "ef_construction": 120} and parse_spec(spec.text) == spec
    index = spec.make("cosine")
    index.build(vs.base)
    assert _hnsw(index.raw).hnsw.efConstruction == 120 and index.label == "faiss:HNSW16,SQ8,efConstruction=120"
    assert index.family == FaissIndex("HNSW16,SQ8").family            # the same family at any efConstruction
    base, q = prepare(vs.base, "cosine", "b"), prepare(vs.queries, "cosine", "q")
    gd, _ = exact_topk(base, q, 10, "cosine")
    _, i = index.search(vs.queries, 10, efSearch=32)
    assert recall_ties(base, q, i, gd, 10, "cosine").mean() >= 0.9
    index.save(tmp_path / "h.idx")
    again = FaissIndex.load(tmp_path / "h.idx")
    assert again.ef_construction == 120 and np.array_equal(again.search(vs.queries, 10, efSearch=32)[1], i)


@pytest.mark.parametrize("body, phrase", [
    ("IVF16,Flat,efConstruction=10", "efConstruction applies to HNSW indexes only"),
    ("HNSW16,foo=3", "is not a faiss build option"),
    ("HNSW16,efConstruction=x", "must be a positive integer"),
    ("HNSW16,efConstruction=0", "must be a positive integer"),
    ("efConstruction=3", "missing the faiss factory string"),
])
def test_bad_faiss_build_options_are_named(vs, body, phrase):
    from workbench.index.spec import parse_spec

    with pytest.raises(IndexSpecError, match=phrase):
        parse_spec(f"faiss:{body}").make("cosine").build(vs.base)
