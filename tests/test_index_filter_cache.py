"""Pre-filters are prepared once per `allowed` array and rebuilt for a new one, with identical results."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.index.faiss import FaissIndex
from workbench.index.hnswlib import HnswlibIndex
from workbench.vectors.formats import synthetic_clusters


@pytest.mark.parametrize("make", [lambda: FaissIndex("Flat", metric="cosine"),
                                  lambda: HnswlibIndex(metric="cosine", M=8, ef_construction=40)])
def test_filter_is_reused_for_the_same_array_and_rebuilt_for_another(make):
    vs = synthetic_clusters(n=600, dim=16, n_queries=5, n_clusters=6, seed=1, metric="cosine")
    index = make()
    index.build(vs.base)
    evens, odds = np.arange(0, 600, 2), np.arange(1, 600, 2)
    _, first = index.search(vs.queries, 5, allowed=evens)
    prepared = index._filter_cache[2]
    _, again = index.search(vs.queries, 5, allowed=evens)
    assert index._filter_cache[2] is prepared
    np.testing.assert_array_equal(first, again)
    assert (first % 2 == 0).all()
    _, other = index.search(vs.queries, 5, allowed=odds)
    assert index._filter_cache[2] is not prepared and (other % 2 == 1).all()
