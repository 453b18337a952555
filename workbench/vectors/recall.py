"""Recall of a result against exact neighbours: tie-aware (ann-benchmarks) and by id overlap.

Tie-aware recall follows ann-benchmarks (Aumüller, Bernhardsson, Faithfull, "ANN-Benchmarks",
Information Systems 2020): a returned item counts when its recomputed distance to the query is at most
the k-th true distance plus ``TIE_EPS``, so an index is not penalised for returning another item of a
tie; a result listing the same id twice is an error. Filtered search passes ``allowed``: the denominator
becomes ``min(k, len(allowed))`` (a selection smaller than ``k`` cannot fill ``k``) and a returned id
counts only when it is allowed.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import DuplicateResultError
from workbench.vectors.kernel import pair_distances

TIE_EPS = 1e-3  # ann-benchmarks' slack on the k-th true distance


def check_no_duplicates(ids: np.ndarray) -> None:
    """Raise ``DuplicateResultError`` naming the first query row and id that repeat (``-1`` is ignored)."""
    s = np.sort(ids, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        row, col = np.argwhere(dup)[0]
        raise DuplicateResultError(f"query {row}: id {s[row, col + 1]} appears more than once in the result")


def as_distance(d: np.ndarray, metric: str) -> np.ndarray:
    """Smaller-is-better distances in ann-benchmarks' units: Euclidean (not squared) for l2, minus the
    similarity for cosine/ip (cosine: 1 - s differs from -s by a constant, so the slack is the same)."""
    return np.sqrt(np.maximum(d, 0)) if metric == "l2" else -d


def _n_true(k: int, allowed: np.ndarray | None) -> int:
    return k if allowed is None else min(k, int(allowed.size))


def is_allowed(ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Boolean mask of ``ids`` that are in the sorted ``allowed`` array (``-1`` is never allowed)."""
    pos = np.minimum(np.searchsorted(allowed, ids), allowed.size - 1)
    return (ids >= 0) & (allowed[pos] == ids)


def recall_ties(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, gt_distances: np.ndarray, k: int,
                metric: str, allowed: np.ndarray | None = None, eps: float = TIE_EPS) -> np.ndarray:
    """Per-query tie-aware recall@k of ``ids`` (prepared ``base``/``queries``, true distances ordered best first)."""
    ids = np.asarray(ids)[:, :k]
    check_no_duplicates(ids)
    n = _n_true(k, allowed)
    got = np.nan_to_num(as_distance(pair_distances(base, queries, ids, metric), metric), nan=np.inf)
    limit = as_distance(gt_distances[:, n - 1], metric)[:, None] + eps
    hit = got <= limit
    if allowed is not None:
        hit &= is_allowed(ids, allowed)
    return np.minimum(hit.sum(axis=1) / n, 1.0)


def recall_ids(ids: np.ndarray, gt_ids: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per-query fraction of the true top-k ids that were returned (ties not counted)."""
    n = _n_true(k, allowed)
    ids, gt = np.asarray(ids)[:, :k], np.asarray(gt_ids)[:, :n]
    return np.array([len(np.intersect1d(a[a >= 0], b)) for a, b in zip(ids, gt)]) / n
