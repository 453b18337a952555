"""LanceDB tables behind the index interface (LanceDB 0.40, https://lancedb.github.io/lancedb/; IVF-PQ after
Jégou, Douze, Schmid, "Product quantization for nearest neighbor search", TPAMI 2011; HNSW after Malkov &
Yashunin, TPAMI 2018).

SPEC: ``lancedb:exact`` (no vector index: a flat scan), ``lancedb:IVF_FLAT``, ``lancedb:IVF_PQ`` and
``lancedb:IVF_HNSW_SQ``, each IVF type with ``name=int`` build parameters (:data:`BUILD_PARAMS`), e.g.
``lancedb:IVF_PQ,num_partitions=64,num_sub_vectors=16?nprobes=5,10&refine_factor=4``. Query parameters
(:data:`QUERY_PARAMS`, each set on the query object per call, so a sweep never rebuilds): ``nprobes``
(partitions searched, default 20; it sets LanceDB's minimum and maximum), ``refine_factor`` (re-rank
``k * refine_factor`` candidates with the stored vectors) and ``ef`` (HNSW candidate list, default ``1.5 k``).
LanceDB's separate ``minimum_nprobes``/``maximum_nprobes`` are left out: in 0.40 a query with the minimum
below the maximum searched as many partitions as with ``nprobes`` at the maximum, filtered or not (measured).

The table (``id`` = row position, ``vector`` fixed-size float32) lives under ``uri``, by default a fresh
temporary directory owned by the index and removed by ``close()`` (or when the index is collected). LanceDB's
``_distance`` is ``1 - cos``, ``1 - dot`` and the squared Euclidean distance for its ``cosine``, ``dot`` and
``l2`` types: similarities are turned back into ``1 - _distance``, ``l2`` is kept (the tests check all three).

Per query: LanceDB's public async query API run on its own background event loop (the one its sync API
uses, and one that also works under Jupyter's running loop), ids read from ``_rowid`` (mapped to positions at
open) so no column is fetched. Measured on 20K x 64, IVF_PQ nprobes=10, 2 busy cores: 1.5-1.8 ms a query, of
which LanceDB's execution (``analyze_plan``) is 0.6 ms; the same query through the private binding objects
took 1.0-1.1 ms (the public API reads the table schema on every query), through the sync API 2.0-2.6 ms.

Filtering: ``"pre"`` is LanceDB's pre-filter on a boolean column that holds the allowed set, written once
per allowed array (like faiss's ``IDSelectorBatch``): an ``id IN (...)`` list is re-planned on every query,
which cost 4x (1% of 20K rows) to 15x (50%) a column predicate. ``"post"`` is the base class's (search
``k * overfetch``, drop the disallowed), which at ``overfetch=1`` is what LanceDB's own ``postfilter()``
returns: its top ``k``, then the filter.

Threads: LanceDB's Rust runtime sizes its pools once, at its first use (the compute pool from
``LANCE_CPU_THREADS``); nothing changes them afterwards, so ``set_threads`` only records the number. A caller
that wants fewer threads sets the variable before the first LanceDB call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.background_loop import LOOP
from lancedb.index import IvfFlat, IvfHnswSq, IvfPq

from workbench.errors import DatabaseError, DatasetError, IndexSpecError
from workbench.index.base import VectorIndex

TABLE = "vectors"
META = "workbench.json"
_DISTANCE = {"cosine": "cosine", "ip": "dot", "l2": "l2"}
_CONFIG = {"IVF_FLAT": IvfFlat, "IVF_PQ": IvfPq, "IVF_HNSW_SQ": IvfHnswSq}
#: index type -> build parameters it takes (all positive integers; unset ones are LanceDB's defaults)
BUILD_PARAMS: dict[str, tuple[str, ...]] = {
    "exact": (),
    "IVF_FLAT": ("num_partitions", "sample_rate"),
    "IVF_PQ": ("num_partitions", "num_sub_vectors", "num_bits", "sample_rate"),
    "IVF_HNSW_SQ": ("num_partitions", "m", "ef_construction", "sample_rate"),
}
QUERY_PARAMS: dict[str, type] = {"nprobes": int, "refine_factor": int, "ef": int}
_APPLIES = {"exact": (), "IVF_FLAT": ("nprobes",), "IVF_PQ": ("nprobes", "refine_factor"),
            "IVF_HNSW_SQ": ("nprobes", "refine_factor", "ef")}
_SAMPLE_RATE = 256  # LanceDB's default
DEFAULT_NPROBES = 20  # LanceDB's default: its minimum and maximum
_LOW32 = np.uint64(0xFFFFFFFF)


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """The constructor arguments of ``lancedb:BODY``: an index type, then ``name=int`` parameters."""
    kind, *parts = [p.strip() for p in body.split(",")]
    params: dict[str, Any] = {}
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise IndexSpecError(f"index spec {spec_text!r}: expected name=<int> after the index type, got {part!r}")
        if name in params:
            raise IndexSpecError(f"index spec {spec_text!r}: build parameter {name} given twice")
        try:
            params[name] = int(value)
        except ValueError:
            raise IndexSpecError(f"index spec {spec_text!r}: {name} must be a positive integer, got {value!r}") from None
    check_build(kind, params, f"index spec {spec_text!r}")
    return {"index_type": kind, **params}


def build_text(build: dict[str, Any]) -> str:
    """The body ``parse_build`` reads back: ``IVF_PQ,num_partitions=64,num_sub_vectors=16``."""
    rest = [f"{k}={v}" for k, v in build.items() if k != "index_type"]
    return ",".join([build["index_type"], *rest])


def check_build(index_type: str, params: dict[str, Any], where: str) -> None:
    """``IndexSpecError`` unless ``index_type`` is known and ``params`` are its parameters, positive ints."""
    if index_type not in BUILD_PARAMS:
        raise IndexSpecError(f"{where}: unknown LanceDB index type {index_type!r}; expected one of "
                             f"{', '.join(BUILD_PARAMS)}")
    accepted = BUILD_PARAMS[index_type]
    for name, value in params.items():
        if name not in accepted:
            raise IndexSpecError(f"{where}: {index_type} takes no build parameter {name!r}; "
                                 f"accepted: {', '.join(accepted) or 'none'}")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise IndexSpecError(f"{where}: {name} must be a positive integer, got {value!r}")
    if params.get("num_bits", 8) not in (4, 8):
        raise IndexSpecError(f"{where}: num_bits must be 4 or 8 (LanceDB's PQ codes), got {params['num_bits']}")
    if params.get("m", 4) < 4:
        raise IndexSpecError(f"{where}: m must be at least 4 (LanceDB's HNSW), got {params['m']}")


def dir_bytes(path: Path) -> int:
    """Sum of the sizes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class LancedbIndex(VectorIndex):
    """A LanceDB table with one vector index (or none, ``exact``) built with fixed parameters."""

    library = "lancedb"
    QUERY_PARAMS = QUERY_PARAMS

    def __init__(self, index_type: str = "exact", metric: str = "cosine", uri: str | Path | None = None,
                 **params: Any) -> None:
        """``uri``: the database directory (the table ``vectors`` in it is replaced by ``build``); None makes
        a temporary one that ``close()`` removes."""
        check_build(index_type, params, "lancedb")
        super().__init__(metric, index_type=index_type, **params)
        # in BUILD_PARAMS order, so one configuration has one label
        self.index_type = index_type
        self.params = {k: int(params[k]) for k in BUILD_PARAMS[index_type] if k in params}
        self.uri = Path(uri) if uri is not None else None
        self._distance = _DISTANCE[self.metric]
        #: load (rows/s, seconds) and index build (seconds) times and the sizes of the last build
        self.build_stats: dict[str, float] = {}
        self._table: Any = None
        self._starts: np.ndarray | None = None
        self._n = 0
        self._cleanup: weakref.finalize | None = None

    @property
    def family(self) -> str:
        return f"lancedb:{self.index_type}"

    @property
    def label(self) -> str:
        return ",".join([f"lancedb:{self.index_type}", *(f"{k}={v}" for k, v in self.params.items())])

    @property
    def table_dir(self) -> Path:
        """The directory of the Lance table."""
        self._require_built()
        return self.uri / f"{TABLE}.lance"

    def validate(self, dim: int) -> None:
        nsv = self.params.get("num_sub_vectors")
        if nsv is not None and dim % nsv:
            raise IndexSpecError(f"{self.label}: num_sub_vectors={nsv} must divide the dimension {dim}")

    # -- building ---------------------------------------------------------------------------
    def _build(self, vectors: np.ndarray) -> None:
        n, d = vectors.shape
        # LanceDB trains IVF-PQ on sample_rate vectors a partition and silently trains fewer partitions
        # than asked when there are not enough; refuse instead, so the label says what was built
        cap = n // self.params.get("sample_rate", _SAMPLE_RATE)
        if self.index_type == "IVF_PQ" and self.params.get("num_partitions", 0) > cap:
            raise IndexSpecError(f"{self.label}: num_partitions={self.params['num_partitions']} needs "
                                 f"{self.params['num_partitions']} x sample_rate vectors; {n} vectors allow at "
                                 f"most {cap} (lower num_partitions or sample_rate)")
        self.close()
        if self.uri is None:
            self.uri = Path(tempfile.mkdtemp(prefix="workbench-lancedb-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.uri), True)
        data = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d)})
        t0 = time.perf_counter()
        db = self._run(lancedb.connect_async(str(self.uri)), f"connect to {self.uri}")
        mode = "overwrite" if TABLE in self._run(db.list_tables(), "list tables").tables else "create"
        table = self._run(db.create_table(TABLE, data, mode=mode), "write the table")
        t1 = time.perf_counter()
        if self.index_type != "exact":
            config = _CONFIG[self.index_type](distance_type=self._distance, **self.params)
            self._run(table.create_index("vector", config=config), f"build {self.label}")
        t2 = time.perf_counter()
        self._open(table, n)
        index_dir = self.uri / f"{TABLE}.lance" / "_indices"
        self.build_stats = {"load_s": t1 - t0, "load_rows_per_s": n / max(t1 - t0, 1e-9), "index_s": t2 - t1,
                            "table_bytes": dir_bytes(self.uri / f"{TABLE}.lance"),
                            "index_bytes": dir_bytes(index_dir) if index_dir.is_dir() else 0}

    def _open(self, table: Any, n: int) -> None:
        """Keep ``table`` and the map from LanceDB row ids (fragment << 32 | offset) to positions."""
        rows = self._run(table.query().select(["id"]).with_row_id().to_arrow(), "scan the ids")
        ids = rows["id"].to_numpy().astype(np.int64)
        rid = rows["_rowid"].to_numpy()
        frag, off = (rid >> np.uint64(32)).astype(np.int64), (rid & _LOW32).astype(np.int64)
        starts = np.zeros(int(frag.max(initial=0)) + 1, dtype=np.int64)
        starts[frag] = ids - off
        if len(ids) != n or not np.array_equal(np.sort(ids), np.arange(n)) or (starts[frag] + off != ids).any():
            raise DatasetError(f"{self.uri}: table {TABLE} does not hold ids 0..{n - 1} in row order "
                               f"({len(ids)} rows); it was changed outside the workbench")
        self._table, self._starts, self._n = table, starts, n

    @staticmethod
    def _run(coro: Any, what: str) -> Any:
        try:
            return LOOP.run(coro)
        except (RuntimeError, ValueError, OSError) as exc:   # LanceDB's errors carry no class of their own
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(f"LanceDB could not {what}: {reason}") from None

    # -- searching --------------------------------------------------------------------------
    def _check_query_params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = super()._check_query_params(params)
        extra = sorted(set(out) - set(_APPLIES[self.index_type]))
        if extra:
            raise IndexSpecError(f"query parameter(s) {', '.join(extra)} do not apply to {self.label}; "
                                 f"it takes: {', '.join(_APPLIES[self.index_type]) or 'none'}")
        return out

    def _query(self, vectors: np.ndarray, k: int, params: dict[str, Any], flt: str | None) -> Any:
        # the distance type must be named without an index too (a flat scan defaults to l2)
        q = (self._table.query().nearest_to(vectors).distance_type(self._distance).limit(k)
             .select(["_distance"]).with_row_id())
        if flt is not None:
            q = q.where(flt)                       # LanceDB's default: applied before the vector search
        if "nprobes" in params:
            q = q.nprobes(params["nprobes"])
        if "refine_factor" in params:
            q = q.refine_factor(params["refine_factor"])
        if "ef" in params:
            q = q.ef(params["ef"])
        return q

    def _ids(self, rid: np.ndarray) -> np.ndarray:
        return self._starts[rid >> np.uint64(32)] + (rid & _LOW32).view(np.int64)

    def _make_filter(self, ids: np.ndarray, mode: str) -> str:
        """The name of a boolean column true on ``ids``, added to the table once per id set."""
        name = "allowed_" + hashlib.sha1(ids.tobytes()).hexdigest()[:16]
        if name not in self._run(self._table.schema(), "read the schema").names:
            # only the column is written; the vector index stays valid
            members = ",".join(map(str, ids.tolist()))
            self._run(self._table.add_columns({name: f"id IN ({members})"}), "add a filter column")
        return name

    def _search(self, queries: np.ndarray, k: int, flt: str | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        res = self._run(self._query(queries, k, params, flt).to_arrow(), "search")
        nq = len(queries)
        qi = res["query_index"].to_numpy() if "query_index" in res.column_names else np.zeros(res.num_rows, int)
        dist, ids = res["_distance"].to_numpy(), self._ids(res["_rowid"].to_numpy())
        order = np.lexsort((ids, dist, qi))
        qi, dist, ids = qi[order], dist[order], ids[order]
        counts = np.bincount(qi, minlength=nq)
        col = np.arange(len(qi)) - np.repeat(np.cumsum(counts) - counts, counts)
        out_d = np.full((nq, k), np.inf if self.metric == "l2" else -np.inf, dtype=np.float32)
        out_i = np.full((nq, k), -1, dtype=np.int64)
        out_d[qi, col] = dist if self.metric == "l2" else 1.0 - dist
        out_i[qi, col] = ids
        return out_d, out_i

    def _searcher(self, k: int, params: dict[str, Any], flt: str | None) -> Callable[[np.ndarray], np.ndarray]:
        query, run, to_ids = self._query, LOOP.run, self._ids

        def one(row: np.ndarray) -> np.ndarray:
            return to_ids(run(query(row, k, params, flt).to_arrow()).column("_rowid").to_numpy())
        return one

    def _default_query_params(self) -> dict[str, Any]:
        return {"nprobes": DEFAULT_NPROBES} if self.index_type != "exact" else {}

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Copy the table directory and the wrapper's metadata to the directory ``path`` (replaced whole)."""
        self._require_built()
        path = Path(path)
        if path.exists() and path.resolve() == self.uri.resolve():
            return                                 # a loaded index saved where it was loaded from
        if path.exists() and not (path / META).is_file():
            raise DatasetError(f"{path}: exists and is not a saved LanceDB index; not replacing it")
        meta = {"library": self.library, "index_type": self.index_type, "params": self.params,
                "metric": self.metric, "dim": self.dim, "ntotal": self._n, "lancedb": lancedb.__version__}
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        try:
            shutil.copytree(self.table_dir, tmp / f"{TABLE}.lance")
            (tmp / META).write_text(json.dumps(meta, sort_keys=True))
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path) -> "LancedbIndex":
        """Open a directory written by ``save`` in place: ``close`` keeps it, pre-filters add columns to it."""
        path = Path(path)
        if not (path / META).is_file():
            raise DatasetError(f"{path}: not a saved LanceDB index (no {META})")
        meta = json.loads((path / META).read_text())
        out = cls(meta["index_type"], meta["metric"], uri=path, **meta["params"])
        db = out._run(lancedb.connect_async(str(path)), f"connect to {path}")
        out._open(out._run(db.open_table(TABLE), f"open table {TABLE} in {path}"), meta["ntotal"])
        out.dim = meta["dim"]
        return out

    def close(self) -> None:
        """Drop the table handle; remove the directory if the index made it."""
        self._table, self._starts, self._n, self.dim = None, None, 0, None
        self._filter_cache = None                  # its column belongs to this table
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup, self.uri = None, None

    def build_report(self) -> dict[str, float]:
        """Load rows/s and seconds, index build seconds, table and index bytes on disk of the last build."""
        return {f"db_{k}": float(v) for k, v in self.build_stats.items()}

    def size_bytes(self) -> int:
        """Bytes on disk of the table directory: vectors, ids, the index, manifests (filter columns too)."""
        return dir_bytes(self.table_dir)

    def set_threads(self, n: int) -> None:
        """Recorded only: LanceDB's pools are fixed when its runtime starts (see the module docstring)."""
        self.threads = int(n)

    @property
    def raw(self) -> Any:
        """LanceDB's ``AsyncTable`` (for bare-library comparisons; run its coroutines on ``LOOP``)."""
        return self._table

    @property
    def ntotal(self) -> int:
        return self._n
