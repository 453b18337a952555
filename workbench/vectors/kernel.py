"""The one vector kernel: metric names, validation, normalisation, scores, exact top-k.

Every module that checks a matrix, normalises rows, computes distances or brute-force neighbours calls
this one; nothing else in the package does vector math of its own.

Conventions (the index convention, ``workbench.index.base``):

- ``metric`` is ``"cosine"`` (rows L2-normalised, then inner product), ``"ip"`` (inner product, larger is
  better) or ``"l2"`` (squared Euclidean distance, smaller is better).
- *Distances* are in that metric's own units: the similarity for ``cosine``/``ip``, the squared distance
  for ``l2``. *Scores* are larger-is-better everywhere (``l2``: minus the squared distance).
- Zero rows: a zero vector has no direction, so normalising one is an error (``QueryError`` naming the
  first such row). That is the only rule; no function silently keeps or perturbs a zero row.
- Ties in exact top-k: best distance first, then the smaller id, also across the k-th place. A tie is
  equality of the computed float32 distances; a matrix product may round those of two identical vectors
  an ulp apart (tie-aware recall, ``workbench.vectors.recall``, absorbs that). Missing slots (fewer than
  ``k`` candidates) are ``id == -1`` with distance ``-inf`` (similarities) or ``+inf`` (``l2``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from workbench.errors import DimensionError, IndexSpecError, QueryError, WorkbenchError

METRICS = ("cosine", "ip", "l2")


def check_metric(metric: str, error: type[WorkbenchError] = IndexSpecError, where: str = "") -> str:
    """``metric`` if it is one of :data:`METRICS`, else ``error`` naming the accepted ones."""
    if metric not in METRICS:
        raise error(f"{where}unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


def check_dim(what: str, got: int | np.ndarray, expected: int, against: str = "expected") -> None:
    """``DimensionError`` naming ``what`` and both numbers unless ``got`` (a size, or an array's last axis)
    is ``expected``; ``against`` names the other side (``"base has"``, ``"int8 ranges have"``)."""
    d = got if isinstance(got, (int, np.integer)) else (got.shape[-1] if getattr(got, "ndim", 0) else -1)
    if d != expected:
        raise DimensionError(f"{what}: dimension {d}, {against} {expected}")


def as_matrix(x: Any, what: str, dim: int | None = None, dtype: type = np.float32,
              error: type[WorkbenchError] = QueryError) -> np.ndarray:
    """``x`` as a C-contiguous 2-D ``dtype`` array, or ``error`` naming ``what`` and the bad row/column.

    A 1-D row of length ``dim`` is taken as one vector. Refused: non-numeric dtypes, other shapes, no rows,
    a dimension other than ``dim`` (``DimensionError`` with both numbers), NaN or infinite values, float
    values that overflow float32, and fractional values where integer ids (``dtype=np.int64``) are wanted.
    """
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise error(f"{what}: dtype {a.dtype} is not numeric")
    if a.ndim == 1 and dim is not None and a.shape[0] == dim:
        a = a[None, :]
    if a.ndim != 2:
        raise error(f"{what}: expected a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] == 0:
        raise error(f"{what}: is empty (0 vectors)")
    if dim is not None:
        check_dim(what, a.shape[1], dim)
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            raise error(f"{what}: non-finite value {a[i, j]} at row {i}, column {j}")
        if np.dtype(dtype).kind == "i" and np.any(a != np.round(a)):
            raise error(f"{what}: ids must be integers, got dtype {a.dtype} with fractional values")
        if np.dtype(dtype) == np.float32 and a.dtype.itemsize > 4:
            big = np.abs(a) > np.finfo(np.float32).max
            if big.any():
                i, j = np.argwhere(big)[0]
                raise error(f"{what}: value {a[i, j]} at row {i}, column {j} overflows float32")
    return np.ascontiguousarray(a, dtype=dtype)


def normalize(x: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows scaled to unit length (float32); a zero row is a ``QueryError`` naming the first one."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise QueryError(f"{what}: {zero.size} zero vector(s) (no cosine direction), first at row {zero[0]}")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def prepare(x: Any, metric: str, what: str, dim: int | None = None) -> np.ndarray:
    """Checked float32 vectors, normalised for cosine: what every index and the ground truth see."""
    a = as_matrix(x, what, dim)
    return normalize(a, what) if check_metric(metric) == "cosine" else a


def missing_distance(metric: str) -> float:
    """The distance of an empty result slot: worse than any real one."""
    return np.inf if metric == "l2" else -np.inf


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row."""
    return np.einsum("nd,nd->n", x, x)


def distances(queries: np.ndarray, base: np.ndarray, metric: str,
              base_sq: np.ndarray | None = None) -> np.ndarray:
    """``(nq, n)`` distances of prepared vectors in the metric's units (similarity, or squared L2).

    Squared L2 is computed from dot products, ``|b|^2 - 2 q.b + |q|^2``, clipped at 0 against rounding;
    pass ``base_sq`` (``sq_norms(base)``) to reuse it across query batches."""
    dots = queries @ base.T
    if metric != "l2":
        return dots
    b2 = sq_norms(base) if base_sq is None else base_sq
    # this order of the float32 sums is the one the cached ground truth was computed with: keep it, so a
    # recomputed entry is bit-identical to a cached one (and tie order cannot change)
    return np.maximum(b2[None, :] - 2 * dots + sq_norms(queries)[:, None], 0)


def scores(queries: np.ndarray, base: np.ndarray, metric: str) -> np.ndarray:
    """``(nq, n)`` larger-is-better scores of prepared vectors (``l2``: minus the squared distance)."""
    d = distances(queries, base, metric)
    return -d if metric == "l2" else d


def pair_distances(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """Distance of each query to each of its ``ids`` (``-1`` -> NaN), recomputed from prepared vectors."""
    safe = np.where(ids < 0, 0, ids)
    v = base[safe]                                          # (nq, k, d)
    if metric == "l2":
        diff = v - queries[:, None, :]
        d = np.einsum("qkd,qkd->qk", diff, diff)
    else:
        d = np.einsum("qkd,qd->qk", v, queries)
    return np.where(ids < 0, np.nan, d)


def top_k_of_scores(score: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the ``k`` largest scores of each row, best first, ties to the smaller position."""
    n = score.shape[1]
    k = min(k, n)
    if k < n:
        part = _ties_at_the_cut_to_smaller_positions(score, np.argpartition(-score, k - 1, axis=1)[:, :k])
    else:
        part = np.tile(np.arange(n), (len(score), 1))
    sel = np.take_along_axis(score, part, axis=1)
    order = np.lexsort((part, -sel), axis=1)  # lexsort's last key is the primary one
    return np.take_along_axis(part, order, axis=1)


def _ties_at_the_cut_to_smaller_positions(score: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``part`` (an argpartition top-k) with the items tied at the k-th score taken by smallest position.

    argpartition keeps an arbitrary subset of the items tied with the k-th score; only rows where some of
    them were left out are redone (rare outside duplicated vectors), by rank among the ties."""
    sel = np.take_along_axis(score, part, axis=1)
    kth = sel.min(axis=1, keepdims=True)
    rows = np.flatnonzero((score == kth).sum(axis=1) > (sel == kth).sum(axis=1))
    if rows.size:
        s, t, k = score[rows], kth[rows], part.shape[1]
        tied = s == t
        need = k - (s > t).sum(axis=1, keepdims=True)
        keep = (s > t) | (tied & (np.cumsum(tied, axis=1) <= need))
        part = part.copy()
        part[rows] = np.nonzero(keep)[1].reshape(rows.size, k)   # row-major: each row's k positions
    return part


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, metric: str, allowed: np.ndarray | None = None,
               batch: int = 256, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, ids)``, each ``(nq, k)``, of the exact top-``k`` of prepared vectors, by query batches.

    ``allowed`` (sorted, unique ids) restricts the candidates; with fewer than ``k`` of them the missing
    slots are ``-1`` (see the module docstring for the tie rule and the fill distance)."""
    cand = base if allowed is None else base[allowed]
    kk = min(k, len(cand))
    base_sq = sq_norms(cand) if metric == "l2" else None
    dist = np.full((len(queries), k), missing_distance(metric), dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    starts = range(0, len(queries), batch)
    # a disabled tqdm still costs ~10 us a call: too much on the one-query-at-a-time path
    for lo in tqdm(starts, desc="exact search", unit="batch") if progress else starts:
        d = distances(queries[lo:lo + batch], cand, metric, base_sq)
        pos = top_k_of_scores(-d if metric == "l2" else d, kk)   # allowed is sorted: position order = id order
        dist[lo:lo + len(d), :kk] = np.take_along_axis(d, pos, axis=1)
        ids[lo:lo + len(d), :kk] = pos if allowed is None else allowed[pos]
    return dist, ids
