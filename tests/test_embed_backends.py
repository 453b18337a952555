"""Embedding backends: one export reused, a corrupt export redone, cache keys never mixing two backends."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.embed.backends import export_problem
from workbench.embed.encoder import Embedder
from workbench.errors import ModelUnavailableError

TEXTS = ["a blunt body in hypersonic flow", "boundary layer transition on a flat plate", "x"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("wbcache")
    emb = Embedder(cache_dir=root, backend="onnx-int8", show_progress=False)
    emb.encode(TEXTS)
    assert emb.export_made is True
    return root


def test_backend_cache_keys_never_mix(cache):
    int8 = Embedder(cache_dir=cache, backend="onnx-int8", show_progress=False)
    torch = Embedder(cache_dir=cache, backend="torch", show_progress=False)
    assert int8.cache.root != torch.cache.root and int8.cache.key(TEXTS[0]) != torch.cache.key(TEXTS[0])
    v8 = int8.encode(TEXTS)
    assert int8.last_stats["cache_hits"] == len(TEXTS)
    vt = torch.encode(TEXTS)
    assert torch.last_stats["encoded"] == len(TEXTS)            # nothing taken from the int8 namespace
    assert not np.array_equal(v8, vt) and np.einsum("nd,nd->n", v8, vt).min() > 0.9


def test_export_is_reused(cache):
    emb = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False)
    emb.encode(TEXTS[:1])
    assert emb.export_made is False


def test_corrupt_export_is_redone(cache):
    folder = next((cache / "exports").glob("*-onnx-int8-O3"))
    model = folder / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    assert "checksum" in export_problem(folder)
    emb = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False)
    v = emb.encode(TEXTS)
    assert emb.export_made is True and export_problem(folder) is None
    ref = Embedder(cache_dir=cache, backend="onnx-int8", show_progress=False).encode(TEXTS)  # cached before
    np.testing.assert_allclose(v, ref, atol=1e-5)


def test_unknown_and_missing_backends_are_clear():
    with pytest.raises(ModelUnavailableError, match="unknown embedding backend 'tensorrt'"):
        Embedder(backend="tensorrt")
    with pytest.raises(ModelUnavailableError, match="openvino"):
        Embedder(backend="openvino")
