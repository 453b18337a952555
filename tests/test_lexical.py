"""BM25 through bm25s: stemming and stopwords, zero-score padding dropped, variants, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import LexicalError
from workbench.hybrid.lexical import VARIANTS, BM25Retriever

TEXTS = ["Flutter of swept wings at high speeds", "Laminar boundary layers on a flat plate",
         "Heat transfer in hypersonic flows", "The wing and the boundary layer interact",
         "Supersonic flutter of panels"]
IDS = [f"d{i}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def bm25() -> BM25Retriever:
    return BM25Retriever().index(TEXTS, IDS)


def ids_of(run, row: int = 0) -> list[str]:
    return [run.docs[d] for d in run.doc_ids[row] if d >= 0]


def test_defaults_are_lucene_reference_settings(bm25: BM25Retriever) -> None:
    assert bm25.settings == {"method": "lucene", "k1": 1.5, "b": 0.75, "delta": 0.5, "stopwords": "en",
                             "stemmer": "english"}


def test_stemming_matches_inflections_and_padding_is_dropped(bm25: BM25Retriever) -> None:
    run = bm25.retrieve(["fluttering wing"], k=5, query_ids=["q"])
    assert set(ids_of(run)) == {"d0", "d3", "d4"}  # "wings" and "flutter" stem-match; d1, d2 would be padding
    assert run.lengths().tolist() == [3] and np.isnan(run.scores[0, 3:]).all() and (run.scores[0, :3] > 0).all()
    assert run.min_score == 0.0


def test_stopword_only_and_unknown_queries_return_nothing(bm25: BM25Retriever) -> None:
    run = bm25.retrieve(["the and of", "zeppelin"], k=3, query_ids=["a", "b"])
    assert run.lengths().tolist() == [0, 0]


def test_k_larger_than_corpus(bm25: BM25Retriever) -> None:
    assert bm25.retrieve(["flutter"], k=100).lengths().tolist() == [2]


def test_scores_against_hand_computed_lucene_bm25() -> None:
    """Lucene BM25: idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf part tf / (tf + k1 (1 - b + b dl/avgdl))."""
    texts, ids = ["apple apple banana", "banana cherry", "cherry date elder fig"], ["x", "y", "z"]
    r = BM25Retriever(stopwords=None, stemmer=None).index(texts, ids)
    run = r.retrieve(["apple"], k=3)
    dl, avgdl = 3, (3 + 2 + 4) / 3
    expected = np.log(1 + (3 - 1 + 0.5) / (1 + 0.5)) * 2 / (2 + 1.5 * (1 - 0.75 + 0.75 * dl / avgdl))
    assert ids_of(run) == ["x"] and run.scores[0, 0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", VARIANTS)
def test_variants_rank_the_obvious_document_first(method: str) -> None:
    corpus = TEXTS + [f"filler text number {i} about nothing" for i in range(20)]
    r = BM25Retriever(method=method).index(corpus, [f"d{i}" for i in range(len(corpus))])
    assert ids_of(r.retrieve(["hypersonic heat transfer"], k=3))[0] == "d2"


def test_save_load_round_trip(bm25: BM25Retriever, tmp_path) -> None:
    path = bm25.save(tmp_path / "idx")
    bm25.save(path)  # overwriting an existing index is atomic too
    loaded = BM25Retriever.load(path)
    a, b = bm25.retrieve(["boundary layer flutter"], k=5), loaded.retrieve(["boundary layer flutter"], k=5)
    assert loaded.settings == bm25.settings and loaded.doc_ids == IDS
    np.testing.assert_array_equal(a.doc_ids, b.doc_ids)
    np.testing.assert_allclose(a.scores, b.scores)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_input(tmp_path) -> None:
    with pytest.raises(LexicalError, match="unknown BM25 variant 'bm42'"):
        BM25Retriever(method="bm42")
    with pytest.raises(LexicalError, match="0 <= b <= 1, got k1=1.2, b=2"):
        BM25Retriever(k1=1.2, b=2)
    with pytest.raises(LexicalError, match="3 texts but 2 document ids"):
        BM25Retriever().index(["a b", "c d", "e f"], ["x", "y"])
    with pytest.raises(LexicalError, match="empty corpus"):
        BM25Retriever().index([], [])
    with pytest.raises(LexicalError, match="call index"):
        BM25Retriever().retrieve(["query"])
    with pytest.raises(LexicalError, match="not a BM25 index folder"):
        BM25Retriever.load(tmp_path)
