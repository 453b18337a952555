"""The one interface every index implements (after ann-benchmarks' ``BaseANN``).

Build parameters are fixed at construction and ``build``; query parameters are swept with
``set_query_params`` (or per call through ``search(..., **query_params)``) without rebuilding. Vectors are
checked and normalised by the vector kernel (``workbench.vectors.kernel.prepare``), whose conventions
(metric names, distance units, missing slots ``id == -1``) every index follows.

Filtering is a capability of the index. ``search(queries, k, allowed=ids, filter_mode=..., overfetch=N)``
returns only ids in ``allowed``:

- ``"pre"``: the library's own filter while it searches (faiss ``IDSelector`` in the search parameters,
  hnswlib ``filter=``, the exact index's subset, a database's ``WHERE`` clause);
- ``"post"``: search ``k * overfetch`` neighbours without a filter, drop the disallowed ids, keep the first
  ``k``. The base class implements it once for every library; with selectivity ``s`` about
  ``s * k * overfetch`` allowed ids survive, so it comes back short once ``s < 1 / overfetch``.

A library lists the modes it runs itself in ``native_filter_modes`` (``"pre"`` for the in-process ones); a
native mode receives the library's filter object from ``_make_filter(ids, mode)`` in ``_search`` and
``_searcher``. When fewer than ``k`` ids are allowed, the missing slots are ``-1``.

``searcher(k, allowed=..., filter_mode=..., **query_params)`` returns the bare library call for one prepared
query row (``prepare_queries``), filter bound, so that a harness times the library and not this wrapper.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import numpy as np

from workbench.errors import DatasetError, IndexSpecError, QueryError
from workbench.io import atomic_write_bytes
from workbench.vectors.kernel import check_metric, missing_distance, prepare

FILTER_MODES = ("pre", "post")
#: the value types a query parameter may have (``QUERY_PARAMS`` of each library)
QUERY_PARAM_TYPES = (int, float, str)
_MAGIC = b"WBIDX1"
_HEAD = struct.Struct("<6sQ")


def check_query_params(params: dict[str, Any], types: dict[str, type], where: str) -> dict[str, Any]:
    """``params`` checked against ``types`` (name -> int, float or str); ``IndexSpecError`` names the problem.

    Integer parameters must be integers (``nprobe=2.7`` is refused, not truncated), float parameters
    finite numbers, and both positive; string parameters are non-empty text."""
    unknown = sorted(set(params) - set(types))
    if unknown:
        raise IndexSpecError(f"unknown query parameter(s) {', '.join(unknown)} for {where}; "
                             f"accepted: {', '.join(types) or 'none'}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        kind = types[name]
        if kind is str:
            if not isinstance(value, str) or not value:
                raise IndexSpecError(f"query parameter {name}={value!r} of {where} must be non-empty text")
            out[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise IndexSpecError(f"query parameter {name}={value!r} of {where} must be a number")
        if kind is int and not isinstance(value, (int, np.integer)):
            raise IndexSpecError(f"query parameter {name}={value!r} of {where} must be an integer")
        if not math.isfinite(value) or value <= 0:
            raise IndexSpecError(f"query parameter {name}={value!r} of {where} must be a positive number")
        out[name] = kind(value)
    return out


def check_filter_mode(mode: str, overfetch: int) -> None:
    """``QueryError`` unless ``mode`` is one of :data:`FILTER_MODES` and ``overfetch`` a positive integer."""
    if mode not in FILTER_MODES:
        raise QueryError(f"unknown filter mode {mode!r}; expected one of {', '.join(FILTER_MODES)}")
    if isinstance(overfetch, bool) or not isinstance(overfetch, (int, np.integer)) or overfetch < 1:
        raise QueryError(f"overfetch must be a positive integer, got {overfetch!r}")


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


class PreparedFilter(NamedTuple):
    """A caller's ``allowed`` array, its checked ids, and what a search under ``mode`` uses: the library's
    filter object for a native mode, a membership mask for the base class's post-filter."""

    source: np.ndarray
    ids: np.ndarray
    obj: Any
    mode: str


class VectorIndex(ABC):
    """One index configuration: ``build`` once, then ``search`` under many query parameters."""

    library: ClassVar[str]
    #: query parameter name -> type (int, float or str); the SPEC parser reads the same table
    QUERY_PARAMS: ClassVar[dict[str, type]]
    #: filter modes the library runs itself; ``"post"`` is provided by the base class when not listed
    native_filter_modes: ClassVar[tuple[str, ...]] = ("pre",)

    def __init__(self, metric: str, **build_params: Any) -> None:
        self.metric = check_metric(metric)
        self.build_params = dict(build_params)
        self.query_params: dict[str, Any] = {}
        self.dim: int | None = None
        self.threads = 1
        # one predicate is searched by many queries in turn: keep its filter object (see _prepared_filter)
        self._filter_cache: PreparedFilter | None = None

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
        x = prepare(vectors, self.metric, "vectors")
        self.validate(x.shape[1])
        self._build(x)
        self.dim = x.shape[1]

    def prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """Checked float32 queries, normalised for cosine: the rows ``searcher`` functions take."""
        self._require_built()
        return prepare(queries, self.metric, "queries", self.dim)

    def set_query_params(self, **query_params: Any) -> None:
        """Set query-time parameters (``efSearch``, ``nprobe``, ``ef``...) without rebuilding."""
        self.query_params.update(self._check_query_params(query_params))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, filter_mode: str = "pre",
               overfetch: int = 10, **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for each query: ``(distances, ids)``, each ``(n_queries, k)``; with ``allowed``, only
        those ids, filtered as ``filter_mode`` says (``overfetch`` applies to ``"post"``)."""
        q = self.prepare_queries(queries)
        self._check_k(k)
        params = self._params(query_params)
        if allowed is None:
            return self._finish(*self._search(q, k, None, params), k)
        flt = self._prepared_filter(allowed, filter_mode, overfetch)
        if flt.mode in self.native_filter_modes:
            return self._finish(*self._search(q, min(k, flt.ids.size), flt.obj, params), k)
        d, i = self._search(q, min(k * overfetch, self.ntotal), None, params)
        keep = flt.obj[i]                                   # mask[-1] is False: missing slots never kept
        rank = np.cumsum(keep, axis=1) - 1
        rows, cols = np.nonzero(keep & (rank < k))
        dist = np.full((len(q), k), missing_distance(self.metric), dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        dist[rows, rank[rows, cols]], ids[rows, rank[rows, cols]] = d[rows, cols], i[rows, cols]
        return dist, ids

    def searcher(self, k: int, allowed: np.ndarray | None = None, filter_mode: str = "pre", overfetch: int = 10,
                 **query_params: Any) -> Callable[[np.ndarray], np.ndarray]:
        """``f(row) -> ids``: the library's own call for one prepared ``(1, d)`` row, parameters and filter
        bound (ids of at most ``k`` results, missing ones ``-1`` or left out)."""
        self._check_k(k)
        params = self._params(query_params)
        if allowed is None:
            return self._searcher(k, params, None)
        flt = self._prepared_filter(allowed, filter_mode, overfetch)
        if flt.mode in self.native_filter_modes:
            return self._searcher(min(k, flt.ids.size), params, flt.obj)
        search, mask = self._searcher(min(k * overfetch, self.ntotal), params, None), flt.obj

        def post(row: np.ndarray) -> np.ndarray:
            ids = np.asarray(search(row)).reshape(-1)     # a database backend may return a list
            return ids[mask[ids]][:k]
        return post

    def effective_query_params(self, **query_params: Any) -> dict[str, Any]:
        """All query parameters a search would use: the given ones over this index's current values."""
        return {**self._default_query_params(), **self._params(query_params)}

    # -- helpers ----------------------------------------------------------------------------
    def _params(self, query_params: dict[str, Any]) -> dict[str, Any]:
        return {**self.query_params, **self._check_query_params(query_params)}

    def _require_built(self) -> None:
        if self.dim is None:
            raise QueryError(f"{self.label} has not been built (call build or load first)")

    def _check_k(self, k: int) -> None:
        self._require_built()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        if k > self.ntotal:
            raise QueryError(f"k={k} is larger than the index ({self.ntotal} vectors)")

    def _check_query_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return check_query_params(params, self.QUERY_PARAMS, self.label)

    def _finish(self, d: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(d, i)`` widened to ``k`` columns (fewer than ``k`` ids allowed), every missing slot at the
        kernel's fill distance (faiss fills some with the largest float32 instead of infinity)."""
        dist = np.full((len(i), k), missing_distance(self.metric), dtype=np.float32)
        ids = np.full((len(i), k), -1, dtype=np.int64)
        dist[:, :i.shape[1]], ids[:, :i.shape[1]] = np.where(i < 0, dist[:, :i.shape[1]], d), i
        return dist, ids

    def _prepared_filter(self, allowed: np.ndarray, mode: str, overfetch: int) -> PreparedFilter:
        """The checked ids and the filter object for ``mode``, reused while the caller passes the same array.

        Building a selector costs O(|allowed|) per call, which would swamp the latency of one query at a
        high selectivity; callers must not modify an ``allowed`` array in place between searches.
        """
        check_filter_mode(mode, overfetch)
        cached = self._filter_cache
        if cached is not None and cached.source is allowed and cached.mode == mode:
            return cached
        ids = cached.ids if cached is not None and cached.source is allowed else self._check_allowed(allowed)
        if mode in self.native_filter_modes:
            obj = self._make_filter(ids, mode)
        else:
            # one slot more than the ids: a missing result (-1) looks up that last, False, entry
            obj = np.zeros(self.ntotal + 1, dtype=bool)
            obj[ids] = True
        self._filter_cache = PreparedFilter(allowed, ids, obj, mode)
        return self._filter_cache

    def _check_allowed(self, allowed: np.ndarray) -> np.ndarray:
        a = np.asarray(allowed)
        if a.size and a.dtype.kind not in "iu":
            raise QueryError(f"allowed ids must be integers, got dtype {a.dtype}")
        a = np.unique(a.astype(np.int64).reshape(-1))
        if a.size == 0:
            raise QueryError("allowed is empty: no id may be returned")
        if a[0] < 0 or a[-1] >= self.ntotal:
            raise QueryError(f"allowed ids must lie in [0, {self.ntotal}), got range [{a[0]}, {a[-1]}]")
        return a

    # -- library specifics -----------------------------------------------------------------
    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        """The library's filter for sorted, unique, in-range ``ids`` under native ``mode``."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, flt: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, ids)`` of prepared queries; ``flt`` is a ``_make_filter`` object or None."""

    @abstractmethod
    def _searcher(self, k: int, params: dict[str, Any], flt: Any | None) -> Callable[[np.ndarray], np.ndarray]:
        """The library's call for one prepared row, returning its ids; ``flt`` as for ``_search``."""

    @abstractmethod
    def _default_query_params(self) -> dict[str, Any]: ...

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Serialize atomically; ``load`` returns an index that gives identical results."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Load an index written by ``save``."""

    def build_report(self) -> dict[str, float]:
        """Figures of the last build besides its time and size: for a database, load rows/s and the table
        and index bytes on disk; an in-process library has none."""
        return {}

    def server_times_ms(self, queries: np.ndarray, k: int, **query_params: Any) -> np.ndarray | None:
        """Server-side execution time (ms) of each query, where a server runs it; None in-process."""
        return None

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
