"""Vector sets for index benchmarks: file formats and a deterministic synthetic generator.

Formats read by :func:`load_vectors`:

- ann-benchmarks HDF5 (``.hdf5``/``.h5``): datasets ``train`` (base), ``test`` (queries), optional
  ``neighbors`` and ``distances``; the metric comes from the file's ``distance`` attribute
  (``angular`` -> cosine, ``euclidean`` -> l2, ``dot`` -> ip). Aumüller et al., "ANN-Benchmarks" (2020).
- TEXMEX ``.fvecs`` (float32), ``.ivecs`` (int32), ``.bvecs`` (uint8): each record is a little-endian
  int32 dimension followed by that many values (Jégou et al., "Product quantization for nearest neighbor
  search", 2011). A ``*_base.*vecs`` file picks up its siblings ``*_query.*vecs`` and
  ``*_groundtruth.ivecs`` when they exist (the SIFT1M/GIST1M layout).
- ``.npy``: a base matrix only (no queries); ``.npz``: arrays ``base``, ``queries``, optional
  ``neighbors``, ``distances``, ``metric`` (as written by :func:`save_npz`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import DatasetError
from workbench.io import atomic_write_bytes
from workbench.vectors.kernel import as_matrix, check_dim, check_metric, normalize

HDF5_METRICS = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}


@dataclass
class VectorSet:
    """Base vectors, query vectors, a metric, and optionally the exact neighbours of each query.

    ``base`` and ``queries`` are float32 ``(n, d)`` and ``(nq, d)`` (``nq`` may be 0 when a file holds
    base vectors only); ``neighbors`` is int64 ``(nq, K)`` with ids into ``base``; ``distances`` matches
    its shape. Arrays of other numeric dtypes are converted; anything else raises a clear error.
    """

    name: str
    base: np.ndarray
    queries: np.ndarray
    metric: str = "l2"
    neighbors: np.ndarray | None = None
    distances: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_metric(self.metric, DatasetError, f"{self.name}: ")
        self.base = check_matrix(self.base, f"{self.name}: base", np.float32)
        if self.base.shape[0] == 0 or self.base.shape[1] == 0:
            raise DatasetError(f"{self.name}: base is empty (shape {self.base.shape})")
        self.queries = check_matrix(self.queries, f"{self.name}: queries", np.float32)
        check_dim(f"{self.name}: queries", self.queries.shape[1], self.dim, "base has")
        if self.neighbors is not None:
            self.neighbors = check_matrix(self.neighbors, f"{self.name}: neighbors", np.int64)
            if self.neighbors.shape[0] != self.n_queries:
                raise DatasetError(f"{self.name}: neighbors has {self.neighbors.shape[0]} rows, "
                                   f"queries has {self.n_queries}")
            bad = np.argwhere((self.neighbors < 0) | (self.neighbors >= self.n))
            if len(bad):
                i, j = bad[0]
                raise DatasetError(f"{self.name}: neighbors[{i}, {j}] = {self.neighbors[i, j]} is not an id "
                                   f"in base (0..{self.n - 1})")
        if self.distances is not None:
            if self.neighbors is None:
                raise DatasetError(f"{self.name}: distances given without neighbors")
            self.distances = check_matrix(self.distances, f"{self.name}: distances", np.float32)
            if self.distances.shape != self.neighbors.shape:
                raise DatasetError(f"{self.name}: distances shape {self.distances.shape} differs from "
                                   f"neighbors shape {self.neighbors.shape}")

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[0])

    def __repr__(self) -> str:
        k = self.neighbors.shape[1] if self.neighbors is not None else 0
        return (f"VectorSet({self.name!r}: {self.n} x {self.dim} base, {self.n_queries} queries, "
                f"metric={self.metric!r}, neighbors K={k})")


def check_matrix(a: np.ndarray, what: str, dtype: type = np.float32) -> np.ndarray:
    """``a`` as a contiguous 2-D ``dtype`` array (the kernel's validator); an empty array is allowed here
    (a file may hold base vectors only), a bad one is a DatasetError naming ``what`` and the row/column."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[0] == 0 and a.dtype.kind in "biuf":
        return np.ascontiguousarray(a, dtype=dtype)
    return as_matrix(a, what, dtype=dtype, error=DatasetError)


# --- TEXMEX *vecs ---------------------------------------------------------------------------------

_VECS = {".fvecs": np.dtype("<f4"), ".ivecs": np.dtype("<i4"), ".bvecs": np.dtype("u1")}


def _read_vecs(path: str | os.PathLike, elem: np.dtype, limit: int | None) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path}: file is empty")
    if size < 4:
        raise DatasetError(f"{path}: vector 0 is truncated ({size} bytes, its dimension needs 4)")
    d = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if d <= 0:
        raise DatasetError(f"{path}: vector 0 has dimension {d}")
    record = np.dtype([("d", "<i4"), ("v", elem, (d,))])
    n_full, rest = divmod(size, record.itemsize)
    count = n_full if limit is None else min(n_full, limit)
    recs = np.fromfile(path, dtype=record, count=count)
    bad = np.flatnonzero(recs["d"] != d)
    if len(bad):
        i = int(bad[0])
        raise DatasetError(f"{path}: vector {i} has dimension {int(recs['d'][i])}, vector 0 has {d}")
    if rest and (limit is None or limit > n_full):
        raise DatasetError(f"{path}: vector {n_full} is truncated ({rest} of {record.itemsize} bytes; "
                           f"dimension {d})")
    return np.ascontiguousarray(recs["v"])


def read_fvecs(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """float32 ``(n, d)`` from a ``.fvecs`` file (first ``limit`` vectors if given)."""
    return _read_vecs(path, _VECS[".fvecs"], limit)


def read_ivecs(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """int32 ``(n, d)`` from a ``.ivecs`` file (ground-truth neighbour ids in TEXMEX sets)."""
    return _read_vecs(path, _VECS[".ivecs"], limit)


def read_bvecs(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """uint8 ``(n, d)`` from a ``.bvecs`` file (SIFT1B)."""
    return _read_vecs(path, _VECS[".bvecs"], limit)


def write_vecs(path: str | os.PathLike, a: np.ndarray) -> Path:
    """Write a matrix as ``.fvecs``/``.ivecs``/``.bvecs`` (chosen by the suffix), atomically."""
    path = Path(path)
    if path.suffix not in _VECS:
        raise DatasetError(f"{path}: suffix must be one of {', '.join(_VECS)}")
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] == 0:
        raise DatasetError(f"{path}: expected a non-empty 2-D array, got shape {a.shape}")
    record = np.dtype([("d", "<i4"), ("v", _VECS[path.suffix], (a.shape[1],))])
    recs = np.empty(a.shape[0], dtype=record)
    recs["d"] = a.shape[1]
    recs["v"] = a
    return atomic_write_bytes(path, recs.tobytes())


# --- loading --------------------------------------------------------------------------------------

def load_vectors(path: str | os.PathLike, metric: str | None = None) -> VectorSet:
    """Load a vector set from HDF5, ``*vecs``, ``.npy`` or ``.npz`` (see the module docstring).

    ``metric`` overrides the file's own (HDF5 ``distance`` attribute, ``.npz`` ``metric``); the
    default for formats that do not record one is ``l2``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    suffix = path.suffix.lower()
    name = path.stem
    if suffix in (".hdf5", ".h5"):
        return _load_hdf5(path, metric)
    if suffix in _VECS:
        base = _read_vecs(path, _VECS[suffix], None)
        queries, neighbors = np.empty((0, base.shape[1]), np.float32), None
        if "_base" in path.stem:
            q = path.with_name(path.name.replace("_base", "_query"))
            gt = path.with_name(path.stem.replace("_base", "_groundtruth") + ".ivecs")
            if q.is_file():
                queries = _read_vecs(q, _VECS[suffix], None)
                if gt.is_file():
                    neighbors = read_ivecs(gt)
            name = path.stem.replace("_base", "")
        return VectorSet(name, base, queries, metric or "l2", neighbors)
    if suffix == ".npy":
        try:
            base = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
        return VectorSet(name, base, np.empty((0, base.shape[-1] if base.ndim == 2 else 0), np.float32),
                         metric or "l2")
    if suffix == ".npz":
        return _load_npz(path, metric)
    raise DatasetError(f"{path}: unknown vector format {suffix!r} (expected .hdf5, .h5, .fvecs, .ivecs, "
                       f".bvecs, .npy, .npz)")


def _load_hdf5(path: Path, metric: str | None) -> VectorSet:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        missing = [k for k in ("train", "test") if k not in f]
        if missing:
            raise DatasetError(f"{path}: missing dataset(s) {', '.join(missing)} (found {', '.join(f.keys())})")
        distance = f.attrs.get("distance")
        if isinstance(distance, bytes):
            distance = distance.decode()
        if metric is None and distance is not None:
            if distance not in HDF5_METRICS:
                raise DatasetError(f"{path}: distance {distance!r} is not supported "
                                   f"(known: {', '.join(HDF5_METRICS)})")
            metric = HDF5_METRICS[distance]
        arrays = {k: f[k][()] for k in ("train", "test", "neighbors", "distances") if k in f}
    return VectorSet(path.stem, arrays["train"], arrays["test"], metric or "l2",
                     arrays.get("neighbors"), arrays.get("distances"))


def _load_npz(path: Path, metric: str | None) -> VectorSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise DatasetError(f"{path}: not a readable .npz archive ({e})") from None
    missing = [k for k in ("base", "queries") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {', '.join(missing)} (found {', '.join(arrays)})")
    stored = str(arrays["metric"]) if "metric" in arrays else None
    name = str(arrays["name"]) if "name" in arrays else path.stem
    return VectorSet(name, arrays["base"], arrays["queries"], metric or stored or "l2",
                     arrays.get("neighbors"), arrays.get("distances"))


def save_npz(vs: VectorSet, path: str | os.PathLike) -> Path:
    """Write ``vs`` as ``.npz`` (base, queries, metric, name, neighbors/distances when set), atomically."""
    arrays = {"base": vs.base, "queries": vs.queries, "metric": np.array(vs.metric), "name": np.array(vs.name)}
    if vs.neighbors is not None:
        arrays["neighbors"] = vs.neighbors
    if vs.distances is not None:
        arrays["distances"] = vs.distances
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --- synthetic ------------------------------------------------------------------------------------

def synthetic_clusters(n: int, dim: int, n_queries: int, n_clusters: int, seed: int, metric: str = "l2",
                       spread: float = 0.5) -> VectorSet:
    """Gaussian clusters: centres ~ N(0, I), points = centre + ``spread`` * N(0, I), float32.

    Queries are fresh draws from the same mixture. Separate random streams for centres, base and queries
    make the queries independent of ``n``; the same arguments always give identical arrays. With
    ``metric="cosine"`` the vectors are L2-normalised (inner product then equals cosine similarity).
    ``spread`` is the noise scale relative to the centres' (1.0 makes neighbouring clusters overlap).
    """
    for arg, value in (("n", n), ("dim", dim), ("n_clusters", n_clusters)):
        if value < 1:
            raise DatasetError(f"synthetic_clusters: {arg} must be >= 1, got {value}")
    if n_queries < 0 or spread < 0:
        raise DatasetError(f"synthetic_clusters: n_queries and spread must be >= 0, got {n_queries}, {spread}")
    check_metric(metric, DatasetError, "synthetic_clusters: ")
    centres_rng, base_rng, query_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    centres = centres_rng.standard_normal((n_clusters, dim), dtype=np.float32)

    def draw(rng: np.random.Generator, m: int) -> np.ndarray:
        labels = rng.integers(n_clusters, size=m)
        x = rng.standard_normal((m, dim), dtype=np.float32)
        x *= np.float32(spread)
        x += centres[labels]
        return normalize(x, "synthetic vectors") if metric == "cosine" else x

    name = f"synthetic-n{n}-d{dim}-c{n_clusters}-s{seed}-{metric}"
    return VectorSet(name, draw(base_rng, n), draw(query_rng, n_queries), metric)
