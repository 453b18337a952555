"""The one interface every index implements (after ann-benchmarks' ``BaseANN``).

Build parameters are fixed at construction and ``build``; query parameters are swept with
``set_query_params`` (or per call through ``search(..., **query_params)``) without rebuilding.

Conventions:
- ``metric`` is one of ``"cosine"`` (vectors L2-normalised by the index, inner product search),
  ``"ip"`` (inner product, larger is better) or ``"l2"`` (Euclidean, smaller is better).
- ``search`` returns ``(distances, ids)`` of shape ``(n_queries, k)``; distances are in the data set's
  metric convention: for ``cosine``/``ip`` the similarity (larger is better), for ``l2`` the squared
  Euclidean distance. Missing results are ``id == -1``.
- ``allowed`` (optional) is a sorted int64 array of ids a result may contain (pre-filtering).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

METRICS = ("cosine", "ip", "l2")


class VectorIndex(ABC):
    """One index configuration: ``build`` once, then ``search`` under many query parameters."""

    library: ClassVar[str]

    def __init__(self, metric: str, **build_params: Any) -> None:
        self.metric = metric
        self.build_params = dict(build_params)
        self.query_params: dict[str, Any] = {}

    @property
    @abstractmethod
    def family(self) -> str:
        """Short name of the index family for plots and Pareto frontiers (e.g. ``faiss:HNSW``)."""

    @abstractmethod
    def build(self, vectors: np.ndarray) -> None:
        """Train (where needed) and add ``vectors``; ids are row positions."""

    @abstractmethod
    def set_query_params(self, **query_params: Any) -> None:
        """Set query-time parameters (``efSearch``, ``nprobe``, ``ef``...) without rebuilding."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for each query: ``(distances, ids)``, each ``(n_queries, k)``."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Serialize atomically; ``load`` returns an index that gives identical results."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Load an index written by ``save``."""

    @abstractmethod
    def size_bytes(self) -> int:
        """Serialized size in bytes."""

    @abstractmethod
    def set_threads(self, n: int) -> None:
        """Number of threads used by ``search`` and ``build``."""

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Number of indexed vectors."""
