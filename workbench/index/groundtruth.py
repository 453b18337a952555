"""Exact nearest neighbours (``workbench.vectors.kernel.exact_topk``), cached on disk per (base, queries,
metric, k).

Distances and the tie rule are the kernel's: similarity for ``cosine``/``ip`` (cosine on normalised
vectors), squared Euclidean for ``l2``; each row ordered by distance, then id. Tie-aware recall
(``workbench.vectors.recall``) does not depend on which tied item made the cut. The cache entry is an
``.npz`` written atomically with a sha256 sidecar that is checked on load; a damaged entry is recomputed
with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

from workbench.config import cache_dir
from workbench.errors import QueryError
from workbench.io import atomic_write_bytes, atomic_write_json, sha256_bytes
from workbench.vectors.kernel import exact_topk

GT_K = 100


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
    top = min(k, len(base))  # a base smaller than k gives fewer columns, not missing slots
    if not cache:
        return exact_topk(base, queries, top, metric, progress=progress)
    root = (cache_dir() / "groundtruth") if cache is True else Path(cache)
    path = root / f"{vectors_digest(base, queries, metric)[:32]}-k{k}.npz"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        raw = path.read_bytes()
        if json.loads(sidecar.read_text()).get("sha256") == sha256_bytes(raw):
            with np.load(io.BytesIO(raw)) as z:
                return z["distances"], z["ids"]
        warnings.warn(f"ground-truth cache {path} fails its checksum; recomputing it", stacklevel=2)
    dist, ids = exact_topk(base, queries, top, metric, progress=progress)
    buf = io.BytesIO()
    np.savez(buf, distances=dist, ids=ids)
    raw = buf.getvalue()
    atomic_write_bytes(path, raw)
    atomic_write_json(sidecar, {"sha256": sha256_bytes(raw), "metric": metric, "k": int(ids.shape[1]),
                                "n_base": len(base), "n_queries": len(queries)})
    return dist, ids
