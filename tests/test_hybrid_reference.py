"""The reference figures of the issue on the real collections (nDCG@10, all judged queries):
BM25 (bm25s Lucene k1=1.5 b=0.75, English stopwords and stemming), MiniLM cosine, RRF k=60 over the top
100 of each; and the cross-validated convex combination beats the best single retriever held-out.
Embeddings come from the cache (the first run embeds the collections, a few minutes)."""

from __future__ import annotations

import pytest
from conftest import requires_real_data

REFERENCE = {  # bm25, dense, rrf
    "cranfield": (0.373, 0.382, 0.422),
    "cisi": (0.386, 0.419, 0.442),
    "medline": (0.696, 0.788, 0.795),
}


@pytest.mark.slow
@requires_real_data
@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_figures(name: str) -> None:
    from workbench.embed import Embedder
    from workbench.runners.hybrid import run_hybrid

    result = run_hybrid(name, folds=5, embedder=Embedder(show_progress=False), sink=None)
    m = result.metrics
    for method, expected in zip(("bm25", "dense", "rrf"), REFERENCE[name]):
        assert m[method]["ndcg@10"] == pytest.approx(expected, abs=0.01), method
    best_single = max(m["bm25"]["ndcg@10"], m["dense"]["ndcg@10"])
    assert m["convex"]["ndcg@10"] > best_single
    assert result.payload["n_queries"] == len(result.per_query["bm25"])
