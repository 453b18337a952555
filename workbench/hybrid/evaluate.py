"""IR metrics through pytrec_eval (the trec_eval reference implementation), over all judged queries.

pytrec_eval scores only the queries present in a run, so a judged query without results would drop out
of the mean; here it counts as 0. Scores are made strictly decreasing in rank first
(:func:`workbench.hybrid.runs.strictly_decreasing`), so trec_eval's tie rule (by document id) cannot
reorder a run.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from workbench.errors import MetricError
from workbench.hybrid.runs import Run

Qrels = dict[str, dict[str, int]]
DEFAULT_METRICS = ("ndcg@10", "recall@100", "map", "mrr@10", "p@10")

# our name -> (pytrec_eval measure, result key, depth the run is cut to before evaluation)
_PATTERNS = {
    "ndcg": ("ndcg_cut.{k}", "ndcg_cut_{k}", None),
    "recall": ("recall.{k}", "recall_{k}", None),
    "p": ("P.{k}", "P_{k}", None),
    "map": ("map_cut.{k}", "map_cut_{k}", None),
    "mrr": ("recip_rank", "recip_rank", "{k}"),  # trec_eval has no cutoff for recip_rank: cut the run
}



def _parse(metric: str) -> tuple[str, str, int | None]:
    if metric == "map":
        return "map", "map", None
    if metric == "ndcg":
        return "ndcg", "ndcg", None
    m = re.fullmatch(r"(ndcg|recall|p|map|mrr)@(\d+)", metric)
    if not m:
        raise MetricError(f"unknown metric {metric!r}; use map, ndcg, or ndcg@k, recall@k, p@k, map@k, mrr@k")
    measure, key, cut = _PATTERNS[m.group(1)]
    k = m.group(2)
    return measure.format(k=k), key.format(k=k), int(cut.format(k=k)) if cut else None


def judged_queries(qrels: Qrels) -> list[str]:
    """Queries with at least one relevant document (grade > 0): the ones every mean is taken over."""
    return [q for q, docs in qrels.items() if any(g > 0 for g in docs.values())]


def per_query(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """One row per judged query, one column per metric; queries the run lacks (or left empty) score 0."""
    import pytrec_eval

    judged = judged_queries(qrels)
    if not judged:
        raise MetricError("no judged queries: every query in the qrels has only grade-0 judgements")
    qrels = {q: qrels[q] for q in judged}
    table = pd.DataFrame(0.0, index=pd.Index(judged, name="query"), columns=list(metrics))
    by_cut: dict[int | None, list[tuple[str, str, str]]] = {}
    for metric in metrics:
        measure, key, cut = _parse(metric)
        by_cut.setdefault(cut, []).append((metric, measure, key))
    for cut, items in by_cut.items():
        r = run if cut is None else run.truncate(cut)
        results = {q: d for q, d in r.to_dict(strict=True).items() if d}
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {m for _, m, _ in items})
        scored = evaluator.evaluate(results)
        for metric, _, key in items:
            values = pd.Series({q: v[key] for q, v in scored.items()}, dtype=float)
            table.loc[values.index, metric] = values.to_numpy()
    return table


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over all judged queries (missing queries count as 0)."""
    return {m: float(v) for m, v in per_query(run, qrels, metrics).mean().items()}


def metric_matrix(runs: Sequence[Run], qrels: Qrels, metric: str = "ndcg@10") -> np.ndarray:
    """``(len(runs), n_judged)`` per-query values of one metric for many runs (parameter grids)."""
    return np.stack([per_query(r, qrels, [metric])[metric].to_numpy() for r in runs])
