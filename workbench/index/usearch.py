"""Unum's usearch HNSW (https://github.com/unum-cloud/usearch; the graph of Malkov & Yashunin, TPAMI 2018)
with vectors stored as ``f32``, ``f16`` or ``i8``.

Build parameters ``M`` (usearch's ``connectivity``), ``ef_construction`` (``expansion_add``) and ``dtype``;
query parameter ``ef`` (``expansion_search``, set on the index before a call: usearch reads it per search).
Cosine runs as usearch's ``cos`` on vectors this wrapper normalised, ``ip`` as ``ip``; both return ``1 - dot``,
turned back into the similarity; ``l2`` as ``l2sq`` (squared distances, as faiss). With ``i8`` usearch maps
each component to ``round(127 x)``, which suits normalised vectors only: ``dtype=i8`` takes metric ``cosine`` alone.

usearch 2.26's Python API has no filtered search, so ``native_filter_modes = ()`` and the base class
post-filters.

SPEC: ``usearch:M=<int>,ef_construction=<int>,dtype=f32|f16|i8`` (defaults 16, 128, f32) with ``ef``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from usearch.compiled import ScalarKind
from usearch.index import Index

from workbench.errors import IndexSpecError
from workbench.index.base import VectorIndex, read_index_file, write_index_file

_METRIC = {"cosine": "cos", "ip": "ip", "l2": "l2sq"}
DTYPES = ("f32", "f16", "i8")
BUILD_DEFAULTS: dict[str, Any] = {"M": 16, "ef_construction": 128, "dtype": "f32"}
DEFAULT_EF = 64  # usearch's default expansion_search
QUERY_PARAMS: dict[str, type] = {"ef": int}


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """The build parameters of ``usearch:BODY``: ``M``, ``ef_construction`` (positive integers), ``dtype``."""
    build: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, eq, value = (s.strip() for s in part.partition("="))
        if not eq or name not in BUILD_DEFAULTS:
            raise IndexSpecError(f"index spec {spec_text!r}: unknown usearch build parameter {part!r}; "
                                 f"accepted: {', '.join(BUILD_DEFAULTS)}")
        if name == "dtype":
            if value not in DTYPES:
                raise IndexSpecError(f"index spec {spec_text!r}: usearch dtype={value!r}; expected one of "
                                     f"{', '.join(DTYPES)}")
            build[name] = value
            continue
        try:
            v = int(value)
        except ValueError:
            v = 0
        if v <= 0:
            raise IndexSpecError(f"index spec {spec_text!r}: usearch {name}={value!r} must be a positive integer")
        build[name] = v
    return {**BUILD_DEFAULTS, **build}


class UsearchIndex(VectorIndex):
    """A usearch ``Index`` with fixed ``M``, ``ef_construction`` and storage type; ``ef`` swept per call."""

    library = "usearch"
    QUERY_PARAMS = QUERY_PARAMS
    native_filter_modes: tuple[str, ...] = ()

    def __init__(self, M: int = 16, ef_construction: int = 128, dtype: str = "f32", metric: str = "cosine") -> None:
        if dtype not in DTYPES:
            raise IndexSpecError(f"usearch dtype={dtype!r}; expected one of {', '.join(DTYPES)}")
        if dtype == "i8" and metric != "cosine":
            # usearch maps a component x to round(127 x): only vectors within [-1, 1] survive it
            raise IndexSpecError(f"usearch dtype=i8 needs normalised vectors: use metric cosine, not {metric}")
        super().__init__(metric, M=int(M), ef_construction=int(ef_construction), dtype=dtype)
        self.M, self.ef_construction, self.dtype = int(M), int(ef_construction), dtype
        self._index: Index | None = None

    @property
    def family(self) -> str:
        return "usearch:HNSW" + ("" if self.dtype == "f32" else f",{self.dtype}")

    @property
    def label(self) -> str:
        return f"usearch:M={self.M},ef_construction={self.ef_construction},dtype={self.dtype}"

    def _new(self, dim: int) -> Index:
        return Index(ndim=dim, metric=_METRIC[self.metric], dtype=self.dtype, connectivity=self.M,
                     expansion_add=self.ef_construction, expansion_search=DEFAULT_EF)

    def _build(self, vectors: np.ndarray) -> None:
        index = self._new(vectors.shape[1])
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=self.threads)
        self._index = index

    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        raise AssertionError("usearch has no native filter mode")  # never called: native_filter_modes is empty

    def _distances(self, d: np.ndarray) -> np.ndarray:
        return 1.0 - d if self.metric != "l2" else d

    def _search(self, queries: np.ndarray, k: int, flt: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        self._index.expansion_search = max(k, params.get("ef", DEFAULT_EF))
        m = self._index.search(queries, k, threads=self.threads)
        keys, d = np.atleast_2d(m.keys).astype(np.int64), np.atleast_2d(m.distances).astype(np.float32)
        missing = np.arange(k)[None, :] >= np.atleast_1d(m.counts)[:, None]   # unused slots hold sentinels
        keys[missing] = -1
        return self._distances(d), keys

    def _searcher(self, k: int, params: dict[str, Any], flt: Any | None) -> Callable[[np.ndarray], np.ndarray]:
        self._index.expansion_search = max(k, params.get("ef", DEFAULT_EF))
        search, unknown = self._index._compiled.search_many, ScalarKind.Unknown   # the compiled call

        def one(row: np.ndarray) -> np.ndarray:
            keys, _, counts = search(row, count=k, exact=False, threads=1, dtype=unknown)[:3]
            return keys[0, :counts[0]]
        return one

    def _default_query_params(self) -> dict[str, Any]:
        return {"ef": DEFAULT_EF}

    def save(self, path: str | Path) -> None:
        self._require_built()
        meta = {"library": self.library, "M": self.M, "ef_construction": self.ef_construction,
                "dtype": self.dtype, "metric": self.metric, "dim": self.dim}
        write_index_file(path, meta, bytes(self._index.save()))

    @classmethod
    def load(cls, path: str | Path) -> "UsearchIndex":
        meta, payload = read_index_file(path)
        out = cls(meta["M"], meta["ef_construction"], meta["dtype"], meta["metric"])
        index = out._new(meta["dim"])
        index.load(payload)
        out._index, out.dim = index, meta["dim"]
        return out

    def size_bytes(self) -> int:
        self._require_built()
        return int(self._index.serialized_length)

    def set_threads(self, n: int) -> None:
        self.threads = int(n)

    @property
    def raw(self) -> Any:
        """The library's own index object (for bare-library comparisons)."""
        return self._index

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.size)
