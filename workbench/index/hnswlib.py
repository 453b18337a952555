"""hnswlib's HNSW graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs", TPAMI 2018).

Build parameters ``M`` (links per node; level-0 holds 2M, so about 8M + 4 + 4d + 8 bytes a vector) and
``ef_construction``; query parameter ``ef`` (the candidate list). Quirks handled here: hnswlib does not
save ``ef`` (it is set again on every search), uses ``max(ef, k)``, returns ``1 - dot`` for ``ip`` (turned
back into the similarity) and squared distances for ``l2`` (kept, as faiss does). Cosine runs as ``ip``
on vectors this wrapper normalised, so both libraries see the same vectors.

SPEC: ``hnswlib:M=<int>,ef_construction=<int>`` (defaults 16 and 200) with query parameter ``ef``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import hnswlib
import numpy as np

from workbench.errors import IndexSpecError
from workbench.index.base import VectorIndex, read_index_file, write_index_file

_SPACE = {"cosine": "ip", "ip": "ip", "l2": "l2"}
DEFAULT_EF = 10  # hnswlib's own default
BUILD_DEFAULTS = {"M": 16, "ef_construction": 200}
QUERY_PARAMS: dict[str, type] = {"ef": int}


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """The build parameters of ``hnswlib:BODY``: ``M`` and ``ef_construction``, positive integers."""
    build: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, eq, value = part.partition("=")
        if not eq or name not in BUILD_DEFAULTS:
            raise IndexSpecError(f"index spec {spec_text!r}: expected M=<int>,ef_construction=<int>, got {part!r}")
        try:
            v = int(value)
        except ValueError:
            raise IndexSpecError(f"index spec {spec_text!r}: {name} must be a positive integer, "
                                 f"got {value!r}") from None
        if v <= 0:
            raise IndexSpecError(f"index spec {spec_text!r}: {name} must be a positive integer, got {value!r}")
        build[name] = v
    return {**BUILD_DEFAULTS, **build}


class HnswlibIndex(VectorIndex):
    """hnswlib ``Index`` with fixed ``M`` and ``ef_construction``; ``ef`` swept per call."""

    library = "hnswlib"
    QUERY_PARAMS = QUERY_PARAMS

    def __init__(self, M: int = 16, ef_construction: int = 200, metric: str = "cosine", seed: int = 100) -> None:
        super().__init__(metric, M=int(M), ef_construction=int(ef_construction))
        self.M, self.ef_construction, self.seed = int(M), int(ef_construction), seed
        self._index: hnswlib.Index | None = None

    @property
    def family(self) -> str:
        return "hnswlib:HNSW"

    @property
    def label(self) -> str:
        return f"hnswlib:M={self.M},ef_construction={self.ef_construction}"

    def _build(self, vectors: np.ndarray) -> None:
        index = hnswlib.Index(space=_SPACE[self.metric], dim=vectors.shape[1])
        index.init_index(max_elements=len(vectors), M=self.M, ef_construction=self.ef_construction,
                         random_seed=self.seed)
        index.add_items(vectors, np.arange(len(vectors)), num_threads=self.threads)
        self._index = index

    def _distances(self, d: np.ndarray) -> np.ndarray:
        return 1.0 - d if _SPACE[self.metric] == "ip" else d

    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        return frozenset(ids.tolist()).__contains__

    def _threads(self, flt: Any | None) -> int:
        # a Python filter takes the GIL for every visited node: threads would only contend for it
        return 1 if flt is not None else self.threads

    def _search(self, queries: np.ndarray, k: int, flt: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(params.get("ef", DEFAULT_EF))
        ids, d = self._index.knn_query(queries, k=k, num_threads=self._threads(flt), filter=flt)
        return self._distances(d).astype(np.float32), ids.astype(np.int64)

    def _searcher(self, k: int, params: dict[str, Any], flt: Any | None) -> Callable[[np.ndarray], np.ndarray]:
        self._index.set_ef(params.get("ef", DEFAULT_EF))
        knn, threads = self._index.knn_query, self._threads(flt)

        def one(row: np.ndarray) -> np.ndarray:
            return knn(row, k, threads, flt)[0]
        return one

    def _default_query_params(self) -> dict[str, Any]:
        return {"ef": DEFAULT_EF}

    def save(self, path: str | Path) -> None:
        self._require_built()
        fd, tmp = tempfile.mkstemp(dir=Path(path).parent, suffix=".hnsw.tmp")
        os.close(fd)
        try:
            self._index.save_index(tmp)
            payload = Path(tmp).read_bytes()
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = {"library": self.library, "M": self.M, "ef_construction": self.ef_construction,
                "metric": self.metric, "seed": self.seed, "dim": self.dim}
        write_index_file(path, meta, payload)

    @classmethod
    def load(cls, path: str | Path) -> "HnswlibIndex":
        meta, payload = read_index_file(path)
        out = cls(meta["M"], meta["ef_construction"], meta["metric"], meta["seed"])
        fd, tmp = tempfile.mkstemp(dir=Path(path).parent, suffix=".hnsw.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            index = hnswlib.Index(space=_SPACE[meta["metric"]], dim=meta["dim"])
            index.load_index(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)
        out._index, out.dim = index, meta["dim"]
        return out

    def size_bytes(self) -> int:
        self._require_built()
        return int(self._index.index_file_size())

    def set_threads(self, n: int) -> None:
        self.threads = int(n)
        if self._index is not None:
            self._index.set_num_threads(self.threads)

    @property
    def raw(self) -> Any:
        """The library's own index object (for bare-library comparisons)."""
        return self._index

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.get_current_count())
