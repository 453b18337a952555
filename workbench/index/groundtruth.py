"""Exact nearest neighbours by batched brute force, cached on disk per (base, queries, metric, k).

Distances follow the index convention (``workbench.index.base``): similarity for ``cosine``/``ip``
(cosine on normalised vectors), squared Euclidean for ``l2``. Each row is ordered by distance, then
id. Tie-aware recall (``workbench.index.metrics``) does not depend on which tied item made the cut. The cache entry is an ``.npz`` written atomically with a sha256
sidecar that is checked on load; a damaged entry is recomputed with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from workbench.config import cache_dir
from workbench.index.base import QueryError, as_matrix, check_metric, normalize_rows
from workbench.io import atomic_write_bytes, atomic_write_json, sha256_bytes

GT_K = 100


def prepare(x: np.ndarray, metric: str, what: str, dim: int | None = None) -> np.ndarray:
    """Checked float32 vectors, normalised for cosine (what every index and the ground truth see)."""
    a = as_matrix(x, what, dim)
    return normalize_rows(a, what) if check_metric(metric) == "cosine" else a


def pair_distances(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """Distance of each query to each of its ``ids`` (``-1`` -> NaN), recomputed from the vectors.

    ``base`` and ``queries`` must already be prepared (``prepare``)."""
    safe = np.where(ids < 0, 0, ids)
    v = base[safe]                                          # (nq, k, d)
    if metric == "l2":
        d = np.einsum("qkd,qkd->qk", v - queries[:, None, :], v - queries[:, None, :])
    else:
        d = np.einsum("qkd,qd->qk", v, queries)
    return np.where(ids < 0, np.nan, d)


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str, batch: int = 256,
              progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, ids)`` of the exact top-``k`` of each query (prepared vectors), by query batches."""
    k = min(k, len(base))
    better_is_larger = metric != "l2"
    sq = np.einsum("nd,nd->n", base, base) if metric == "l2" else None
    dist = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for lo in tqdm(range(0, len(queries), batch), desc="ground truth", unit="batch", disable=not progress):
        q = queries[lo:lo + batch]
        s = q @ base.T                                         # (b, n)
        if metric == "l2":
            s = np.maximum(sq[None, :] - 2 * s + np.einsum("bd,bd->b", q, q)[:, None], 0)
        key = -s if better_is_larger else s
        top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < len(base) else np.tile(np.arange(len(base)), (len(q), 1))
        # order by distance, then id: deterministic under ties
        cand = np.take_along_axis(key, top, axis=1)
        order = np.lexsort((top, cand), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        ids[lo:lo + len(q)] = top
        dist[lo:lo + len(q)] = np.take_along_axis(s, top, axis=1)
    return dist, ids


def vectors_digest(base: np.ndarray, queries: np.ndarray, metric: str) -> str:
    """sha256 over the prepared vectors and the metric: the identity of a benchmark data set."""
    h = hashlib.sha256(f"{metric}|{base.shape}|{queries.shape}|".encode())
    h.update(np.ascontiguousarray(base).tobytes())
    h.update(np.ascontiguousarray(queries).tobytes())
    return h.hexdigest()


def ground_truth(base: np.ndarray, queries: np.ndarray, metric: str, k: int = GT_K,
                 cache: bool | str | Path = True, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (default 100) ``(distances, ids)`` for prepared ``base``/``queries``.

    Cached under ``cache_dir()/groundtruth`` (or the folder given as ``cache``) by a hash of the vectors,
    the metric and k, so a data set's ground truth is computed once."""
    if len(queries) == 0:
        raise QueryError("queries is empty (0 vectors)")
    if not cache:
        return exact_knn(base, queries, k, metric, progress=progress)
    root = (cache_dir() / "groundtruth") if cache is True else Path(cache)
    path = root / f"{vectors_digest(base, queries, metric)[:32]}-k{k}.npz"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        raw = path.read_bytes()
        if json.loads(sidecar.read_text()).get("sha256") == sha256_bytes(raw):
            with np.load(io.BytesIO(raw)) as z:
                return z["distances"], z["ids"]
        warnings.warn(f"ground-truth cache {path} fails its checksum; recomputing it", stacklevel=2)
    dist, ids = exact_knn(base, queries, k, metric, progress=progress)
    buf = io.BytesIO()
    np.savez(buf, distances=dist, ids=ids)
    raw = buf.getvalue()
    atomic_write_bytes(path, raw)
    atomic_write_json(sidecar, {"sha256": sha256_bytes(raw), "metric": metric, "k": int(ids.shape[1]),
                                "n_base": len(base), "n_queries": len(queries)})
    return dist, ids
