"""Brute force behind the index interface: the vector kernel's ``exact_topk`` over the stored vectors.

SPEC: ``exact`` (library ``"exact"``; ``faiss:Flat`` stays faiss's own flat index). No build or query
parameters. Pre-filtering (``allowed``) scans the allowed vectors only, so a filtered search is exact and
costs time linear in the size of the selection: the exact reference of the filtered-search sweep
(``workbench.bench.filtered``). Ties go to the smaller id (the kernel's rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from workbench.errors import IndexSpecError
from workbench.index.base import VectorIndex, read_index_file, write_index_file
from workbench.vectors.kernel import exact_topk

QUERY_PARAMS: dict[str, type] = {}


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """``exact`` takes no build parameters."""
    if body.strip():
        raise IndexSpecError(f"index spec {spec_text!r}: exact search takes no build parameters, got {body!r}")
    return {}


class ExactIndex(VectorIndex):
    """Exact top-k by brute force over the prepared vectors, the matrix products on BLAS threads."""

    library = "exact"
    QUERY_PARAMS = QUERY_PARAMS

    def __init__(self, metric: str = "cosine") -> None:
        super().__init__(metric)
        self._base: np.ndarray | None = None

    @property
    def family(self) -> str:
        return "exact"

    @property
    def label(self) -> str:
        return "exact"

    @property
    def vectors(self) -> np.ndarray:
        """The prepared (checked; normalised for cosine) vectors, row = id."""
        self._require_built()
        return self._base

    def _build(self, vectors: np.ndarray) -> None:
        self._base = vectors

    def _make_filter(self, ids: np.ndarray, mode: str) -> np.ndarray:
        return ids

    def _search(self, queries: np.ndarray, k: int, flt: np.ndarray | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return exact_topk(self._base, queries, k, self.metric, allowed=flt)

    def _searcher(self, k: int, params: dict[str, Any], flt: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
        base, metric = self._base, self.metric

        def one(row: np.ndarray) -> np.ndarray:
            return exact_topk(base, row, k, metric, allowed=flt)[1]
        return one

    def _default_query_params(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> None:
        self._require_built()
        meta = {"library": self.library, "metric": self.metric, "dim": self.dim, "n": len(self._base)}
        write_index_file(path, meta, self._base.tobytes())

    @classmethod
    def load(cls, path: str | Path) -> "ExactIndex":
        meta, payload = read_index_file(path)
        out = cls(meta["metric"])
        out._base = np.frombuffer(payload, dtype=np.float32).reshape(meta["n"], meta["dim"]).copy()
        out.dim = meta["dim"]
        return out

    def size_bytes(self) -> int:
        self._require_built()
        return int(self._base.nbytes)

    def set_threads(self, n: int) -> None:
        """Limit the BLAS pools process-wide, as ``faiss.omp_set_num_threads`` does for OpenMP."""
        self.threads = int(n)
        threadpool_limits(limits=self.threads, user_api="blas")

    @property
    def ntotal(self) -> int:
        return 0 if self._base is None else len(self._base)
