"""Rank fusion of several runs, vectorised over all queries.

One small pure function per method turns each run's ``(n_queries, depth)`` score matrix into per-result
contributions; :func:`fuse` selects the method by name, adds up the contributions of the same (query,
document) pair across runs (row-wise sorts over all queries at once, no per-document Python), and keeps
each query's best ``depth``.

Documents missing from a list. A run holds only its top ``depth``; a document it did not return has no
score there. RRF, CombSUM and CombMNZ give a missing document nothing from that list (the methods'
definitions; CombMNZ also does not count that list). The convex combination imputes the missing score
explicitly, chosen by ``missing``:

- ``"min"`` (default): the list's lowest normalised score for that query, i.e. the document is taken to
  score as well as the last document the list returned, an upper bound of its true score. With min-max
  normalisation that is 0, the same as ``"zero"``.
- ``"zero"``: 0 after normalisation (what ranx's ``wsum`` does). For z-scores that is the list's mean,
  which puts an unreturned document above half of the returned ones.

Ties in the fused score are broken by corpus order, so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from workbench.errors import RunError
from workbench.hybrid.runs import Run

NORMALISATIONS = ("minmax", "zscore", "tmm")
MISSING = ("min", "zero")


@dataclass(frozen=True)
class Contributions:
    """What each run adds to a (query, document) pair it returned, plus a per-query constant."""

    values: list[np.ndarray]  # one (n_queries, depth_i) array per run; NaN where the run has no result
    base: np.ndarray  # (n_queries,) added to every fused document (imputed scores of missing documents)
    times_count: bool = False  # CombMNZ: multiply the sum by the number of runs that returned the document


# --- normalisation (Bruch et al. 2023, "An Analysis of Fusion Functions for Hybrid Retrieval") ----------

def _padded(scores: np.ndarray, normalised: np.ndarray) -> np.ndarray:
    """NaN where ``scores`` has no result (padding), ``normalised`` elsewhere."""
    return np.where(np.isfinite(scores), normalised, np.nan)


def _row_stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(scores)
    return np.where(valid, scores, np.inf).min(axis=1), np.where(valid, scores, -np.inf).max(axis=1)


def minmax(scores: np.ndarray) -> np.ndarray:
    """``(s - min_q) / (max_q - min_q)`` per query; a list whose scores are all equal maps to 1."""
    lo, hi = _row_stats(scores)
    span = (hi - lo)[:, None]
    return _padded(scores, np.where(span > 0, (scores - lo[:, None]) / np.where(span > 0, span, 1.0), 1.0))


def zscore(scores: np.ndarray) -> np.ndarray:
    """``(s - mean_q) / std_q`` per query (population std); a list whose scores are all equal maps to 0."""
    valid = np.isfinite(scores)
    n = np.maximum(valid.sum(axis=1), 1)[:, None]
    filled = np.where(valid, scores, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / n
    std = np.sqrt((np.where(valid, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)
    return _padded(scores, np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0))


def tmm(scores: np.ndarray, lower: float) -> np.ndarray:
    """Theoretical min-max: ``(s - lower) / (max_q - lower)`` with ``lower`` the scoring function's
    minimum (0 for BM25, -1 for cosine), so a query's scores are not stretched by its own worst result."""
    _, hi = _row_stats(scores)
    span = (hi - lower)[:, None]
    return _padded(scores, np.where(span > 0, (scores - lower) / np.where(span > 0, span, 1.0), 1.0))


def normalise(run: Run, norm: str) -> np.ndarray:
    """The run's scores normalised by ``norm`` (one of :data:`NORMALISATIONS`); NaN stays NaN."""
    if norm == "minmax":
        return minmax(run.scores)
    if norm == "zscore":
        return zscore(run.scores)
    if norm == "tmm":
        if run.min_score is None:
            raise RunError(f"run {run.name!r}: theoretical-min-max normalisation needs the scoring function's "
                           "minimum (Run.min_score), which this run does not state")
        return tmm(run.scores, run.min_score)
    raise RunError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORMALISATIONS)}")


# --- fusion methods ---------------------------------------------------------------------------------

def rrf(runs: Sequence[Run], k: float = 60.0) -> Contributions:
    """Reciprocal rank fusion, ``sum_i 1 / (k + rank_i)`` with ranks from 1 (Cormack, Clarke & Buettcher,
    SIGIR 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods")."""
    if k < 0:
        raise RunError(f"RRF k must be >= 0, got {k}")
    values = [np.where(r.valid, 1.0 / (k + np.arange(1, r.depth + 1))[None, :], np.nan) for r in runs]
    return Contributions(values, np.zeros(len(runs[0].query_ids)))


def convex(runs: Sequence[Run], weights: Sequence[float] | None = None, norm: str = "minmax",
           missing: str = "min") -> Contributions:
    """Convex combination ``sum_i w_i * norm(s_i)`` of normalised scores (Bruch, Gai & Ingber 2023,
    "An Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS): ``norm`` is ``minmax``,
    ``zscore`` or ``tmm`` (theoretical min-max); ``missing`` sets the score of an unreturned document
    (see the module docstring). ``weights`` default to equal; they are used as given (a convex
    combination when they are non-negative and sum to 1)."""
    if missing not in MISSING:
        raise RunError(f"unknown missing-document rule {missing!r}; choose one of {', '.join(MISSING)}")
    w = _weights(runs, weights)
    values, base = [], np.zeros(len(runs[0].query_ids))
    for wi, run in zip(w, runs):
        s = normalise(run, norm)
        m = np.where(run.valid.any(axis=1), np.where(run.valid, s, np.inf).min(axis=1), 0.0) \
            if missing == "min" else np.zeros(len(run.query_ids))
        values.append(wi * (s - m[:, None]))  # present: w*s; the w*m every document gets is in base
        base += wi * m
    return Contributions(values, base)


def combsum(runs: Sequence[Run], norm: str = "minmax") -> Contributions:
    """CombSUM, the sum of a document's normalised scores over the lists that returned it (Fox & Shaw,
    TREC-2 1994, "Combination of Multiple Searches"; normalised as in Lee, SIGIR 1997)."""
    return Contributions([normalise(r, norm) for r in runs], np.zeros(len(runs[0].query_ids)))


def combmnz(runs: Sequence[Run], norm: str = "minmax") -> Contributions:
    """CombMNZ, CombSUM times the number of lists that returned the document (Fox & Shaw 1994)."""
    return Contributions([normalise(r, norm) for r in runs], np.zeros(len(runs[0].query_ids)), times_count=True)


METHODS: dict[str, Callable[..., Contributions]] = {"rrf": rrf, "convex": convex, "combsum": combsum,
                                                   "combmnz": combmnz}


def _weights(runs: Sequence[Run], weights: Sequence[float] | None) -> np.ndarray:
    if weights is None:
        return np.full(len(runs), 1.0 / len(runs))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(runs),):
        raise RunError(f"{len(w)} weights for {len(runs)} runs")
    if not np.isfinite(w).all():
        raise RunError(f"weights must be finite, got {list(w)}")
    return w


def _check_compatible(runs: Sequence[Run]) -> None:
    if len(runs) < 2:
        raise RunError(f"fusion needs at least 2 runs, got {len(runs)}")
    first = runs[0]
    for r in runs[1:]:
        if r.query_ids != first.query_ids:
            raise RunError(f"runs {first.name!r} and {r.name!r} hold different queries "
                           f"({len(first.query_ids)} and {len(r.query_ids)}, or a different order)")
        if r.docs is not first.docs and list(r.docs) != list(first.docs):
            raise RunError(f"runs {first.name!r} and {r.name!r} index different corpora "
                           f"({len(first.docs)} and {len(r.docs)} documents)")


def fuse(runs: Sequence[Run], method: str = "rrf", depth: int = 100, name: str | None = None,
         **params: float | str | Sequence[float]) -> Run:
    """Fuse ``runs`` (same queries, same corpus) with ``method`` from :data:`METHODS`; keep the best
    ``depth`` documents of each query. ``params`` go to the method (``k``, ``weights``, ``norm``, ``missing``)."""
    if method not in METHODS:
        raise RunError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    _check_compatible(runs)
    contrib = METHODS[method](runs, **params)
    n_docs = len(runs[0].docs)
    # All lists of a query side by side, sorted by document: a document's entries become neighbours
    # (at most one per run), padding (position n_docs) goes last. Row-wise sorts beat one global sort.
    ids = np.concatenate([np.where(r.valid, r.doc_ids, n_docs) for r in runs], axis=1)
    vals = np.concatenate([np.where(r.valid, v, 0.0) for v, r in zip(contrib.values, runs)], axis=1)
    order = np.argsort(ids, axis=1, kind="stable")
    ids, vals = np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)
    total, count = vals.copy(), np.ones(ids.shape)
    for shift in range(1, len(runs)):  # add the entries of the same document from the other runs
        same = ids[:, shift:] == ids[:, :-shift]
        total[:, :-shift] += np.where(same, vals[:, shift:], 0.0)
        count[:, :-shift] += same
    first = np.ones(ids.shape, dtype=bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    keep = first & (ids < n_docs)
    if contrib.times_count:
        total *= count
    total = np.where(keep, total + contrib.base[:, None], -np.inf)
    # Best first; the stable sort keeps document order among equal scores.
    width = int(min(depth, keep.sum(axis=1).max(initial=0)))
    top = np.argsort(-total, axis=1, kind="stable")[:, :width]
    out_scores = np.take_along_axis(total, top, axis=1)
    out_ids = np.where(np.isfinite(out_scores), np.take_along_axis(ids, top, axis=1), -1)
    out_scores = np.where(out_ids >= 0, out_scores, np.nan)
    return Run(name or method, list(runs[0].query_ids), out_ids, out_scores, runs[0].docs)
