"""Batched, cached encoding of texts into float32 vectors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tqdm.auto import tqdm

from workbench.config import cache_dir as default_cache_dir
from workbench.embed.backends import (
    DEFAULT_OPT_LEVEL,
    INT8,
    Int8Settings,
    OnnxEncoder,
    check_backend,
    ensure_export,
    variant,
)
from workbench.embed.cache import EmbeddingCache
from workbench.embed.model import load_model, model_identity, model_path
from workbench.vectors.kernel import check_dim

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset

MODEL_DIM = 384


class Embedder:
    """all-MiniLM-L6-v2 with a content-addressed cache; the model loads only when a text is new.

    ``encode`` returns float32 ``(n, 384)`` in input order. Texts are deduplicated, looked up in the
    cache, and the misses are encoded longest first in chunks (the order sentence-transformers uses
    within a call, so throughput matches one bare ``encode`` call) and written after each chunk, so an
    interrupted run keeps what it encoded.

    ``backend`` runs the model in PyTorch (``"torch"``) or ONNX Runtime (``"onnx"``, ``"onnx-int8"``: an export
    made once into the cache, see :mod:`workbench.embed.backends`; ``int8`` its quantization settings); each
    backend variant (backend, quantization settings, optimisation level) has its own cache namespace.
    """

    def __init__(self, normalize: bool = True, batch_size: int = 64, cache_dir: str | Path | None = None,
                 show_progress: bool = True, chunk_size: int = 2048, use_cache: bool = True,
                 backend: str = "torch", opt_level: int = DEFAULT_OPT_LEVEL, int8: Int8Settings = INT8) -> None:
        self.backend = check_backend(backend)
        self.opt_level = opt_level
        self.int8 = int8
        self.normalize = normalize
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        self._path = model_path()
        self._root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.identity = model_identity(self._path, self._root)
        #: what the vectors depend on besides the weights (None: PyTorch, the keys written before backends)
        self.variant = None if backend == "torch" else variant(backend, opt_level, int8)
        self.cache = EmbeddingCache(self._root, self.identity.model_id, normalize, self.variant) if use_cache else None
        self.last_stats: dict[str, float | int] = {}
        self._onnx: OnnxEncoder | None = None
        #: whether this embedder made its backend's export (False: reused one from the cache), once loaded
        self.export_made: bool | None = None

    @property
    def model_id(self) -> str:
        return self.identity.model_id

    @property
    def dim(self) -> int:
        return MODEL_DIM

    def onnx_encoder(self) -> OnnxEncoder:
        """The ONNX Runtime encoder of this backend, exporting the model first when the cache has no export."""
        if self._onnx is None:
            folder, self.export_made = ensure_export(self._path, self._root, self.identity, self.backend,
                                                     self.opt_level, self.int8)
            self._onnx = OnnxEncoder(self._path, folder)
        return self._onnx

    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        if self.backend != "torch":
            return self.onnx_encoder().encode(list(texts), self.batch_size, self.normalize)
        model = load_model(self._path)
        out = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=self.normalize,
                           convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], desc: str = "embedding") -> np.ndarray:
        """Vectors of ``texts`` (float32, ``(n, dim)``), from the cache where possible."""
        start = time.perf_counter()
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        unique = list(dict.fromkeys(texts))
        vectors: dict[str, np.ndarray] = {}
        keys: dict[str, str] = {}
        if self.cache is not None:
            for t in unique:
                keys[t] = k = self.cache.key(t)
                v = self.cache.get(k, self.dim)
                if v is not None:
                    vectors[t] = v
        missing = sorted((t for t in unique if t not in vectors), key=len, reverse=True)
        with tqdm(total=len(missing), desc=desc, unit="text", disable=not self.show_progress or not missing) as bar:
            for i in range(0, len(missing), self.chunk_size):
                chunk = missing[i:i + self.chunk_size]
                encoded = self._encode_uncached(chunk)
                check_dim("model output", encoded, self.dim)
                for t, v in zip(chunk, encoded):
                    vectors[t] = v
                    if self.cache is not None:
                        self.cache.put(keys[t], v)
                bar.update(len(chunk))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = vectors[t]
        self.last_stats = {"n_texts": len(texts), "unique": len(unique), "encoded": len(missing),
                           "cache_hits": len(unique) - len(missing),
                           "seconds": round(time.perf_counter() - start, 4)}
        return out


def embed_dataset(ds: "BeirDataset", embedder: Embedder | None = None,
                  limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised embeddings of a collection's documents (title + text) and queries.

    ``limit`` keeps the first N documents and queries (for quick runs).
    """
    embedder = embedder or Embedder(normalize=True)
    docs, queries = ds.doc_texts(), ds.query_texts()
    if limit is not None:
        docs, queries = docs[:limit], queries[:limit]
    return (embedder.encode(docs, desc=f"{ds.name} documents"),
            embedder.encode(queries, desc=f"{ds.name} queries"))
