"""HybridSearcher: fusion, LRU/TTL cache, per-retriever timeouts, degradation under injected faults,
the both-fail error, bad queries, and the quality monitor."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import pytest

from workbench.errors import QueryError, SearchError
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.monitor import QualityMonitor
from workbench.hybrid.runs import Run
from workbench.hybrid.searcher import HybridSearcher, ResultCache

DOCS = ["a", "b", "c", "d"]


class Fixed:
    """A retriever returning a fixed ranking; counts its calls."""

    def __init__(self, ranking: dict[str, float]) -> None:
        self.ranking, self.calls = ranking, 0

    def retrieve(self, queries: Sequence[str], k: int = 100, query_ids=None, name: str = "fixed") -> Run:
        self.calls += 1
        return Run.from_dict(name, {q: self.ranking for q in query_ids}, DOCS, list(query_ids), min_score=0.0)


class Failing:
    def retrieve(self, queries, k=100, query_ids=None, name="failing") -> Run:
        raise ConnectionError("index server unreachable")


class Hanging:
    """Blocks until released (a retriever that misses its timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def retrieve(self, queries, k=100, query_ids=None, name="hanging") -> Run:
        self.release.wait(30)
        return Fixed({"d": 9.0}).retrieve(queries, k, query_ids, name)


class NaNScores:
    def retrieve(self, queries, k=100, query_ids=None, name="nan") -> Run:
        return Run(name, list(query_ids), np.array([[0]]), np.array([[np.nan]]), DOCS)


LEX = {"a": 3.0, "b": 2.0}
DENSE = {"b": 0.9, "c": 0.8}


def searcher(lex, dense, **kw) -> HybridSearcher:
    return HybridSearcher({"lexical": lex, "dense": dense}, **kw)


def test_fuses_both_retrievers() -> None:
    with searcher(Fixed(LEX), Fixed(DENSE), k=3) as s:
        r = s.search("wing flutter")
    assert r.doc_ids == ["b", "a", "c"] and r.method == "rrf" and not r.degraded and not r.failures
    assert r.scores[0] == pytest.approx(1 / 62 + 1 / 61)


def test_fusion_method_and_params_pass_through() -> None:
    with searcher(Fixed(LEX), Fixed(DENSE), fusion="convex", fusion_params={"norm": "minmax", "weights": [1, 0]}) as s:
        assert s.search("q").doc_ids[:2] == ["a", "b"]


@pytest.mark.parametrize("bad", [Failing(), NaNScores()], ids=["raises", "nan-scores"])
def test_one_failure_degrades_to_the_other(bad) -> None:
    with searcher(bad, Fixed(DENSE)) as s:
        r = s.search("q")
    assert r.degraded and r.method == "dense" and list(r.failures) == ["lexical"]
    assert r.doc_ids == ["b", "c"] and r.scores == [0.9, 0.8]  # the survivor's own results, nothing invented
    assert s.monitor.summary()["degraded_rate"] == 1.0


def test_timeout_degrades_and_is_reported() -> None:
    hang = Hanging()
    with searcher(Fixed(LEX), hang, timeout_s={"lexical": 5.0, "dense": 0.05}) as s:
        r = s.search("q")
        hang.release.set()
    assert r.degraded and r.failures == {"dense": "timed out after 0.05 s"} and r.doc_ids == ["a", "b"]


def test_both_fail_raises_a_clear_error() -> None:
    hang = Hanging()
    with searcher(Failing(), hang, timeout_s=0.05) as s:
        with pytest.raises(SearchError, match=r"all 2 retrievers failed for query 'q': lexical: ConnectionError: "
                                              r"index server unreachable; dense: timed out after 0.05 s"):
            s.search("q")
        hang.release.set()
        assert s.monitor.summary()["failures"] == 1


def test_cache_hits_skip_retrievers_and_degraded_results_are_not_cached() -> None:
    lex, dense = Fixed(LEX), Fixed(DENSE)
    with searcher(lex, dense, cache_size=8) as s:
        first, again = s.search("wing  flutter"), s.search(" wing flutter ")
    assert again.cached and not first.cached and again.doc_ids == first.doc_ids and lex.calls == 1
    assert s.monitor.summary()["cache_hit_rate"] == 0.5
    uncached = Fixed(LEX)
    with searcher(uncached, Fixed(DENSE), cache_size=0) as s:
        s.search("q"), s.search("q")
    assert uncached.calls == 2
    dense_ok = Fixed(DENSE)
    with searcher(Failing(), dense_ok) as s:
        s.search("q"), s.search("q")
    assert dense_ok.calls == 2


def test_cache_lru_and_ttl() -> None:
    now = [0.0]
    cache = ResultCache(maxsize=2, ttl_s=10.0, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    now[0] = 10.0
    assert cache.get("a") is None and len(cache) == 1  # expired entries are dropped on access
    assert (cache.hits, cache.misses) == (3, 2)


@pytest.mark.parametrize("query", ["", "   \n", None], ids=["empty", "blank", "none"])
def test_bad_queries(query) -> None:
    with searcher(Fixed(LEX), Fixed(DENSE)) as s:
        with pytest.raises(QueryError):
            s.search(query)


def test_with_a_real_bm25_retriever() -> None:
    bm25 = BM25Retriever().index(["swept wing flutter", "boundary layer", "heat transfer", "wing boundary"], DOCS)
    with searcher(bm25, Fixed(DENSE), k=2) as s:
        r = s.search("wings")
    assert set(r.doc_ids) <= {"a", "d", "b", "c"} and not r.degraded and len(r.doc_ids) == 2


def test_monitor_summary() -> None:
    m = QualityMonitor(low_score_threshold=0.5, window=4)
    m.record(0.010, 3, 0.9)
    m.record(0.020, 0, None)
    m.record(0.030, 2, 0.1, degraded=True)
    m.record(0.040, 1, 0.7, cached=True)
    m.record(0.050, 1, 0.8)  # window of 4: the first event drops out
    s = m.summary()
    assert s["searches"] == 4 and s["empty_rate"] == 0.25 and s["low_score_rate"] == 0.5
    assert s["degraded_rate"] == 0.25 and s["cache_hit_rate"] == 0.25
    assert s["latency_p50_ms"] == pytest.approx(35.0)
    assert QualityMonitor().summary()["latency_p95_ms"] is None


# --- the dense retriever behind the searcher ------------------------------------------------------------

def unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dense_exact_matches_brute_force() -> None:
    from workbench.hybrid.dense import DenseRetriever

    rng = np.random.default_rng(0)
    docs, queries = unit(rng, 200), unit(rng, 7)
    run = DenseRetriever(docs, [f"d{i}" for i in range(200)]).retrieve_vectors(queries, k=10)
    sims = queries @ docs.T
    np.testing.assert_array_equal(run.doc_ids, np.argsort(-sims, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(run.scores, -np.sort(-sims, axis=1)[:, :10], rtol=1e-6)
    assert run.min_score == -1.0


@pytest.mark.parametrize("make", ["faiss-flat", "hnswlib"])
def test_dense_through_a_vector_index(make: str) -> None:
    from workbench.hybrid.dense import DenseRetriever

    rng = np.random.default_rng(1)
    docs, queries = unit(rng, 300), unit(rng, 5)
    if make == "faiss-flat":
        from workbench.index.faiss import FaissIndex
        index = FaissIndex("Flat", metric="cosine")
    else:
        from workbench.index.hnswlib import HnswlibIndex
        index = HnswlibIndex(M=16, ef_construction=200, metric="cosine")
    index.build(docs)
    if make == "hnswlib":
        index.set_query_params(ef=300)  # ef >= corpus: exhaustive, so it must equal exact search
    ids = [f"d{i}" for i in range(300)]
    exact = DenseRetriever(docs, ids).retrieve_vectors(queries, k=10)
    via = DenseRetriever(docs, ids, index=index).retrieve_vectors(queries, k=10)
    np.testing.assert_array_equal(via.doc_ids, exact.doc_ids)
    np.testing.assert_allclose(via.scores, exact.scores, atol=1e-5)


def test_dense_bad_input() -> None:
    from workbench.errors import DenseError, DimensionError
    from workbench.hybrid.dense import DenseRetriever

    rng = np.random.default_rng(2)
    with pytest.raises(DenseError, match="5 document vectors for 4 document ids"):
        DenseRetriever(unit(rng, 5), ["a", "b", "c", "d"])
    r = DenseRetriever(unit(rng, 4), DOCS)
    with pytest.raises(DimensionError, match="dimension 8, expected 16"):
        r.retrieve_vectors(unit(rng, 2, d=8))
    with pytest.raises(DenseError, match="no encoder"):
        r.retrieve(["text"])
