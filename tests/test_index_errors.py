"""Bad input gives a WorkbenchError whose message names the problem and both numbers."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import DimensionError, IndexSpecError, QueryError, WorkbenchError
from workbench.index.faiss import FaissIndex
from workbench.index.hnswlib import HnswlibIndex

RNG = np.random.default_rng(0)
BASE = RNG.standard_normal((300, 16)).astype(np.float32)


@pytest.fixture(params=["faiss", "hnswlib"])
def index(request):
    idx = FaissIndex("Flat", "cosine") if request.param == "faiss" else HnswlibIndex(8, 40, "cosine")
    idx.build(BASE)
    return idx


def test_dimension_mismatch_names_both_numbers(index):
    with pytest.raises(DimensionError, match="queries: dimension 12, expected 16"):
        index.search(RNG.standard_normal((3, 12)), 5)


def test_k_larger_than_the_index(index):
    with pytest.raises(QueryError, match="k=301 is larger than the index \\(300 vectors\\)"):
        index.search(BASE[:2], 301)
    with pytest.raises(QueryError, match="positive integer"):
        index.search(BASE[:2], 0)


def test_nan_vectors(index):
    q = BASE[:4].copy()
    q[2, 5] = np.nan
    with pytest.raises(QueryError, match="queries: non-finite value nan at row 2, column 5"):
        index.search(q, 5)
    bad = BASE.copy()
    bad[7, 0] = np.inf
    with pytest.raises(QueryError, match="vectors: non-finite value inf at row 7, column 0"):
        FaissIndex("Flat", "l2").build(bad)


def test_empty_query_set(index):
    with pytest.raises(QueryError, match="queries: is empty"):
        index.search(np.empty((0, 16), np.float32), 5)


def test_zero_vector_has_no_cosine_direction(index):
    with pytest.raises(QueryError, match="zero vector"):
        index.search(np.zeros((1, 16)), 5)


def test_unknown_metric_and_query_parameter():
    with pytest.raises(IndexSpecError, match="unknown metric 'dot'"):
        FaissIndex("Flat", "dot")
    idx = HnswlibIndex(8, 40, "l2")
    idx.build(BASE)
    with pytest.raises(IndexSpecError, match="unknown query parameter\\(s\\) nprobe"):
        idx.search(BASE[:1], 5, nprobe=3)
    with pytest.raises(IndexSpecError, match="positive number"):
        idx.search(BASE[:1], 5, ef=-1)
    with pytest.raises(IndexSpecError, match="ef=2.7 of hnswlib:M=8,ef_construction=40 must be an integer"):
        idx.search(BASE[:1], 5, ef=2.7)
    with pytest.raises(IndexSpecError, match="efSearch=nan of faiss:HNSW8,Flat must be an integer"):
        flat = FaissIndex("HNSW8,Flat", "l2")
        flat.build(BASE)
        flat.searcher(5, efSearch=float("nan"))


def test_bad_filters_are_named(index):
    with pytest.raises(QueryError, match="allowed is empty"):
        index.search(BASE[:2], 5, allowed=np.array([], dtype=np.int64))
    with pytest.raises(QueryError, match=r"allowed ids must lie in \[0, 300\), got range \[0, 300\]"):
        index.search(BASE[:2], 5, allowed=[0, 300])
    with pytest.raises(QueryError, match="allowed ids must be integers, got dtype float64"):
        index.search(BASE[:2], 5, allowed=np.array([1.5, 2.0]))
    with pytest.raises(QueryError, match="unknown filter mode 'inside'; expected one of pre, post"):
        index.search(BASE[:2], 5, allowed=[1, 2], filter_mode="inside")
    with pytest.raises(QueryError, match="overfetch must be a positive integer, got 0"):
        index.searcher(5, allowed=[1, 2], filter_mode="post", overfetch=0)


def test_search_before_build():
    with pytest.raises(QueryError, match="has not been built"):
        HnswlibIndex().search(BASE[:1], 1)


def test_all_are_workbench_errors():
    assert issubclass(IndexSpecError, WorkbenchError) and issubclass(QueryError, WorkbenchError)
