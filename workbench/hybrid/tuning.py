"""Fusion parameters chosen by k-fold cross-validation over queries, so reported fused numbers are
held-out: each query is scored with parameters picked on the other folds' queries only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.hybrid.evaluate import Qrels, judged_queries, metric_matrix
from workbench.hybrid.fusion import fuse
from workbench.hybrid.runs import Run

# Weight of the lexical run (dense gets 1 - w), strictly inside (0, 1): the end points are the single
# retrievers, reported on their own. A coarse grid: with tens of queries, near-equal grid points differ
# mostly by noise, and the point best on the training folds tends to be worse on the held-out fold.
WEIGHT_GRID = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))
RRF_K_GRID = (1, 2, 5, 10, 20, 40, 60, 80, 100, 150, 200)


@dataclass(frozen=True)
class Candidate:
    """One parameter setting of a fusion method and its fused run over all queries."""

    method: str
    params: dict
    run: Run


@dataclass
class CVResult:
    """The held-out run (each fold's queries fused with that fold's chosen parameters) and the choices."""

    run: Run
    chosen: list[dict] = field(default_factory=list)  # per fold: params, train and test means of the metric
    metric: str = "ndcg@10"


def kfold(n: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffled, near-equal folds of ``range(n)`` (each a sorted index array)."""
    if not 2 <= folds <= n:
        raise WorkbenchError(f"cross-validation needs 2 <= folds <= queries, got {folds} folds for {n} queries")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, folds)]


def candidates(lexical: Run, dense: Run, depth: int = 100, weights: Sequence[float] = WEIGHT_GRID,
               norms: Sequence[str] = ("minmax", "zscore", "tmm"),
               rrf_ks: Sequence[float] = RRF_K_GRID) -> list[Candidate]:
    """Every grid point: convex combinations ``w * lexical + (1 - w) * dense`` per normalisation, and RRF k."""
    out = [Candidate("convex", {"norm": n, "weights": [float(w), float(1 - w)]},
                     fuse([lexical, dense], "convex", depth, norm=n, weights=[w, 1 - w]))
           for n in norms for w in weights]
    out += [Candidate("rrf", {"k": float(k)}, fuse([lexical, dense], "rrf", depth, k=k)) for k in rrf_ks]
    return out


def cross_validate(cands: Sequence[Candidate], qrels: Qrels, folds: int = 5, seed: int = 0,
                   metric: str = "ndcg@10", name: str = "cv",
                   matrix: np.ndarray | None = None) -> CVResult:
    """Pick, for each fold, the candidate with the best mean ``metric`` on the other folds' judged queries
    (ties: the earlier grid point), and assemble the held-out run from the chosen candidates' rows.

    ``matrix`` (optional) is the precomputed per-query ``metric_matrix`` of ``cands``.
    """
    if not cands:
        raise WorkbenchError("cross-validation needs at least one candidate")
    judged = judged_queries(qrels)
    values = metric_matrix([c.run for c in cands], qrels, metric) if matrix is None else matrix
    run0 = cands[0].run
    row_of = {q: i for i, q in enumerate(run0.query_ids)}
    rows, chosen, ids, scores = [], [], [], []
    for f, test in enumerate(kfold(len(judged), folds, seed)):
        train = np.setdiff1d(np.arange(len(judged)), test)
        best = int(np.argmax(values[:, train].mean(axis=1)))
        chosen.append({"fold": f, "method": cands[best].method, "params": cands[best].params,
                       f"train_{metric}": float(values[best, train].mean()),
                       f"test_{metric}": float(values[best, test].mean()), "n_test": int(len(test))})
        r = [row_of[judged[j]] for j in test if judged[j] in row_of]
        rows += r
        ids.append(cands[best].run.doc_ids[r])
        scores.append(cands[best].run.scores[r])
    width = max(a.shape[1] for a in ids)
    pad = lambda a, v: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=v)  # noqa: E731
    order = np.argsort(rows)  # back to the run's query order
    run = Run(name, [run0.query_ids[rows[i]] for i in order],
              np.concatenate([pad(a, -1) for a in ids])[order],
              np.concatenate([pad(a, np.nan) for a in scores])[order], run0.docs)
    return CVResult(run, chosen, metric)
