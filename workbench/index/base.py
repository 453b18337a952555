"""The one interface every index implements (after ann-benchmarks' ``BaseANN``).

Build parameters are fixed at construction and ``build``; query parameters are swept with
``set_query_params`` (or per call through ``search(..., **query_params)``) without rebuilding.

Conventions:
- ``metric`` is one of ``"cosine"`` (vectors L2-normalised by the index, inner product search),
  ``"ip"`` (inner product, larger is better) or ``"l2"`` (Euclidean, smaller is better).
- ``search`` returns ``(distances, ids)`` of shape ``(n_queries, k)``; distances are in the data set's
  metric convention: for ``cosine``/``ip`` the similarity (larger is better), for ``l2`` the squared
  Euclidean distance. Missing results are ``id == -1``.
- ``allowed`` (optional) is an int array of the ids a result may contain (pre-filtering inside the
  index). When fewer than ``k`` ids are allowed, the missing slots are ``-1``.
- ``searcher(k, **query_params)`` returns the bare library call for one prepared query row
  (``prepare_queries``), so that the harness times the library and not this wrapper.
"""

from __future__ import annotations

import hashlib
import json
import struct
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from workbench.errors import DatasetError, DimensionError, WorkbenchError
from workbench.io import atomic_write_bytes

METRICS = ("cosine", "ip", "l2")
_MAGIC = b"WBIDX1"
_HEAD = struct.Struct("<6sQ")


class IndexSpecError(WorkbenchError, ValueError):
    """An index SPEC, factory string, metric or parameter name/value is invalid."""


class QueryError(WorkbenchError, ValueError):
    """Vectors, queries or k that cannot be searched: empty, NaN, zero norm, k larger than the index."""


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise IndexSpecError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


def as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(n, d)`` array; errors name the problem and both numbers."""
    a = np.asarray(x)
    if a.ndim == 1 and dim is not None and a.shape[0] == dim:
        a = a[None, :]
    if a.ndim != 2:
        raise QueryError(f"{what} must be a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] == 0:
        raise QueryError(f"{what} is empty (0 vectors)")
    if dim is not None and a.shape[1] != dim:
        raise DimensionError(f"{what} have dimension {a.shape[1]}, the index has dimension {dim}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise QueryError(f"{what} contain NaN or infinite values in {rows.size} row(s), first at row {rows[0]}")
    return a


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; a zero row stays zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1), dtype=np.float32)


def normalize_rows(x: np.ndarray, what: str) -> np.ndarray:
    """Unit-length copy of ``x`` (cosine); a zero vector has no direction and is an error."""
    zero = np.flatnonzero(~np.any(x, axis=1))
    if zero.size:
        raise QueryError(f"{what} contain {zero.size} zero vector(s) (no cosine direction), first at row {zero[0]}")
    return unit_rows(x)


def write_index_file(path: str | Path, meta: dict[str, Any], payload: bytes) -> None:
    """One file holding the wrapper's metadata (JSON, with the payload's sha256) and the library's bytes."""
    head = json.dumps({**meta, "sha256": hashlib.sha256(payload).hexdigest()}, sort_keys=True).encode()
    atomic_write_bytes(path, _HEAD.pack(_MAGIC, len(head)) + head + payload)


def read_index_file(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """``(meta, payload)`` of a file written by ``write_index_file``; a damaged file is a DatasetError."""
    raw = Path(path).read_bytes()
    if len(raw) < _HEAD.size or raw[:6] != _MAGIC:
        raise DatasetError(f"{path}: not a workbench index file")
    _, n = _HEAD.unpack_from(raw)
    meta = json.loads(raw[_HEAD.size:_HEAD.size + n])
    payload = raw[_HEAD.size + n:]
    if hashlib.sha256(payload).hexdigest() != meta.pop("sha256"):
        raise DatasetError(f"{path}: index payload fails its checksum (truncated or corrupt)")
    return meta, payload


class VectorIndex(ABC):
    """One index configuration: ``build`` once, then ``search`` under many query parameters."""

    library: ClassVar[str]
    #: query parameter names this library accepts
    query_param_names: ClassVar[tuple[str, ...]]

    def __init__(self, metric: str, **build_params: Any) -> None:
        self.metric = check_metric(metric)
        self.build_params = dict(build_params)
        self.query_params: dict[str, Any] = {}
        self.dim: int | None = None
        self.threads = 1
        # (caller's array, checked ids, library filter): one predicate is searched by many queries in turn
        self._filter_cache: tuple[np.ndarray, np.ndarray, Any] | None = None

    # -- names ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def family(self) -> str:
        """Short name of the index family for plots and Pareto frontiers (e.g. ``faiss:HNSW,Flat``)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """The build configuration, e.g. ``faiss:HNSW32,Flat`` or ``hnswlib:M=16,ef_construction=200``."""

    # -- building and searching ----------------------------------------------------------------
    def validate(self, dim: int) -> None:
        """Raise ``IndexSpecError`` now if this configuration cannot be built at dimension ``dim``."""

    def build(self, vectors: np.ndarray) -> None:
        """Train (where needed) and add ``vectors``; ids are row positions."""
        x = as_matrix(vectors, "vectors")
        self.validate(x.shape[1])
        self._build(normalize_rows(x, "vectors") if self.metric == "cosine" else x)
        self.dim = x.shape[1]

    def prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """Checked float32 queries, normalised for cosine: the rows ``searcher`` functions take."""
        self._require_built()
        q = as_matrix(queries, "queries", self.dim)
        return normalize_rows(q, "queries") if self.metric == "cosine" else q

    def set_query_params(self, **query_params: Any) -> None:
        """Set query-time parameters (``efSearch``, ``nprobe``, ``ef``...) without rebuilding."""
        self.query_params.update(self._check_query_params(query_params))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for each query: ``(distances, ids)``, each ``(n_queries, k)``."""
        q = self.prepare_queries(queries)
        self._check_k(k)
        params = {**self.query_params, **self._check_query_params(query_params)}
        if allowed is None:
            return self._search(q, k, None, params)
        allowed, prepared = self._prepared_filter(allowed)
        kk = min(k, allowed.size)
        d, i = self._search(q, kk, prepared, params)
        if kk == k:
            return d, i
        fill = -np.inf if self.metric != "l2" else np.inf
        dist = np.full((q.shape[0], k), fill, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        dist[:, :kk], ids[:, :kk] = d, i
        return dist, ids

    def searcher(self, k: int, **query_params: Any) -> Callable[[np.ndarray], np.ndarray]:
        """``f(row) -> ids``: the library's own call for one prepared ``(1, d)`` row, parameters bound."""
        self._check_k(k)
        return self._searcher(k, {**self.query_params, **self._check_query_params(query_params)})

    def effective_query_params(self, **query_params: Any) -> dict[str, Any]:
        """All query parameters a search would use: the given ones over this index's current values."""
        return {**self._default_query_params(), **self.query_params, **self._check_query_params(query_params)}

    # -- helpers ----------------------------------------------------------------------------
    def _require_built(self) -> None:
        if self.dim is None:
            raise QueryError(f"{self.label} has not been built (call build or load first)")

    def _check_k(self, k: int) -> None:
        self._require_built()
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        if k > self.ntotal:
            raise QueryError(f"k={k} is larger than the index ({self.ntotal} vectors)")

    def _check_query_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.query_param_names))
        if unknown:
            raise IndexSpecError(f"unknown query parameter(s) {', '.join(unknown)} for {self.label}; "
                                 f"accepted: {', '.join(self.query_param_names)}")
        for name, value in params.items():
            if not isinstance(value, (int, float, np.integer, np.floating)) or value <= 0:
                raise IndexSpecError(f"query parameter {name}={value!r} of {self.label} must be a positive number")
        return dict(params)

    def _prepared_filter(self, allowed: np.ndarray) -> tuple[np.ndarray, Any]:
        """Checked ids and the library's filter object, reused while the caller passes the same array.

        Building a selector costs O(|allowed|) per call, which would swamp the latency of one query at a
        high selectivity; callers must not modify an ``allowed`` array in place between searches.
        """
        cached = self._filter_cache
        if cached is not None and cached[0] is allowed:
            return cached[1], cached[2]
        ids = self._check_allowed(allowed)
        prepared = self._make_filter(ids)
        self._filter_cache = (allowed, ids, prepared)
        return ids, prepared

    def _check_allowed(self, allowed: np.ndarray) -> np.ndarray:
        a = np.unique(np.asarray(allowed, dtype=np.int64))
        if a.size == 0:
            raise QueryError("allowed is empty: no id may be returned")
        if a[0] < 0 or a[-1] >= self.ntotal:
            raise QueryError(f"allowed ids must lie in [0, {self.ntotal}), got range [{a[0]}, {a[-1]}]")
        return a

    # -- library specifics -----------------------------------------------------------------
    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _make_filter(self, ids: np.ndarray) -> Any:
        """The library's pre-filter for sorted, unique, in-range ``ids``."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, allowed: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def _searcher(self, k: int, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]: ...

    @abstractmethod
    def _default_query_params(self) -> dict[str, Any]: ...

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Serialize atomically; ``load`` returns an index that gives identical results."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Load an index written by ``save``."""

    @abstractmethod
    def size_bytes(self) -> int:
        """Serialized size in bytes (the library's own format)."""

    @abstractmethod
    def set_threads(self, n: int) -> None:
        """Number of threads used by ``search`` and ``build``."""

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Number of indexed vectors."""
