"""The end-to-end hybrid evaluation of one collection (``workbench.runners.hybrid`` drives it).

BM25 and dense runs (top ``depth`` each), fused by RRF (k=60, the reference setting), CombSUM and
CombMNZ (min-max), and by methods whose parameters are chosen by k-fold cross-validation over queries:
``convex`` (the tuned convex combination, theoretical-min-max normalisation, which Bruch et al. 2023
found the most robust), ``convex_minmax``, ``convex_zscore`` (weight tuned) and ``rrf_cv`` (k tuned); every
method evaluated with pytrec_eval over all judged queries and compared per query with each single retriever.
:func:`write_outputs` writes ``metrics.json``, ``runs/NAME.trec``, ``per_query.csv``, ``comparison.md``,
``weight_curve.csv`` atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.hybrid.dense import DenseRetriever
from workbench.hybrid.evaluate import (
    DEFAULT_METRICS,
    judged_queries,
    metric_matrix,
    per_query,
)
from workbench.hybrid.fusion import fuse
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.runs import Run, write_trec
from workbench.hybrid.significance import compare
from workbench.hybrid.tuning import CVResult, candidates, cross_validate
from workbench.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset
    from workbench.embed import Embedder

SINGLE = ("bm25", "dense")
NORMS = ("minmax", "zscore", "tmm")
HEADLINE = ("ndcg@10", "recall@100", "map", "mrr@10")
ALPHA = 0.05
OUTPUT_FILES = ("metrics.json", "comparison.md", "per_query.csv", "weight_curve.csv")


@dataclass
class HybridResults:
    """Everything one evaluation measured; ``payload`` is what ``metrics.json`` holds."""

    dataset: str
    runs: dict[str, Run]
    per_query: dict[str, pd.DataFrame]
    payload: dict
    weight_curve: pd.DataFrame  # norm, weight, ndcg@10 on all queries (in-sample, for plots)
    cv: dict[str, CVResult] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.payload["methods"]

    def table(self) -> pd.DataFrame:
        return comparison_table(self.payload)


def comparison_table(payload: dict) -> pd.DataFrame:
    """Methods x metrics, with nDCG@10 deltas, p-values and win/tie/loss against each single retriever."""
    rows = []
    for name, m in payload["methods"].items():
        row = {"method": name, **{k: m[k] for k in HEADLINE}}
        for base in SINGLE:
            c = payload["significance"].get(name, {}).get(base)
            row[f"vs {base}"] = "" if c is None else (
                f"{c['delta']:+.3f}{'*' if c['p_randomization'] < ALPHA else ''} "
                f"(p={c['p_randomization']:.3f}, {c['wins']}/{c['ties']}/{c['losses']})")
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def _markdown(payload: dict) -> str:
    table = comparison_table(payload)
    head = ["method", *table.columns]
    lines = [f"# Hybrid retrieval on {payload['dataset']} ({payload['n_queries']} judged queries)", "",
             f"nDCG@10 differences against each single retriever: * = p < {ALPHA} (paired randomization test, "
             "10,000 resamples); in brackets p and per-query wins/ties/losses. Tuned methods are "
             f"{payload['folds']}-fold cross-validated over queries (held-out).", "",
             "Methods: `rrf` k=60 (Cormack et al. 2009); `combsum`, `combmnz` over min-max scores (Fox & Shaw 1994); "
             "`convex` w·BM25 + (1-w)·dense over theoretical-min-max scores, w tuned (Bruch et al. 2023); "
             "`convex_minmax`, `convex_zscore` the same over min-max and z-scores; `rrf_cv` RRF with k tuned.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        cells = [name] + [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_fusion(ds: "BeirDataset", folds: int = 5, depth: int = 100, seed: int = 0, rrf_k: float = 60.0,
                    embedder: "Embedder | None" = None) -> HybridResults:
    """Evaluate BM25, dense and their fusions on the loaded collection ``ds`` (see the module docstring)."""
    judged = judged_queries(ds.qrels)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    lexical = BM25Retriever().index(ds.doc_texts(), ds.doc_ids)
    runs = {"bm25": lexical.retrieve(ds.query_texts(), depth, ds.query_ids, name="bm25")}
    timings["bm25_index_and_retrieve"] = time.perf_counter() - t

    t = time.perf_counter()
    dense, query_vecs = DenseRetriever.from_dataset(ds, embedder)
    timings["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    runs["dense"] = dense.retrieve_vectors(query_vecs, depth, ds.query_ids, name="dense")
    timings["dense_retrieve"] = time.perf_counter() - t

    pair = [runs["bm25"], runs["dense"]]
    t = time.perf_counter()
    runs["rrf"] = fuse(pair, "rrf", depth, name="rrf", k=rrf_k)
    timings["rrf_fuse"] = time.perf_counter() - t
    runs["combsum"] = fuse(pair, "combsum", depth, name="combsum")
    runs["combmnz"] = fuse(pair, "combmnz", depth, name="combmnz")

    t = time.perf_counter()
    cands = candidates(runs["bm25"], runs["dense"], depth)
    matrix = metric_matrix([c.run for c in cands], ds.qrels, "ndcg@10")
    cv: dict[str, CVResult] = {}
    groups = {("convex" if n == "tmm" else f"convex_{n}"):
              np.array([c.method == "convex" and c.params["norm"] == n for c in cands]) for n in NORMS}
    groups["rrf_cv"] = np.array([c.method == "rrf" for c in cands])
    for name, mask in groups.items():
        idx = np.flatnonzero(mask)
        cv[name] = cross_validate([cands[i] for i in idx], ds.qrels, folds, seed, "ndcg@10", name, matrix[idx])
        runs[name] = cv[name].run
    timings["tuning"] = time.perf_counter() - t

    tables = {name: per_query(run, ds.qrels, DEFAULT_METRICS) for name, run in runs.items()}
    methods = {name: {m: float(v) for m, v in tab.mean().items()} for name, tab in tables.items()}
    significance = {name: {base: compare(tables[name]["ndcg@10"].to_numpy(),
                                         tables[base]["ndcg@10"].to_numpy(), seed=seed).to_dict()
                           for base in SINGLE if base != name}
                    for name in runs}
    fused = [n for n in runs if n not in SINGLE]
    curve = pd.DataFrame([{"norm": c.params["norm"], "weight": c.params["weights"][0],
                           "ndcg@10": float(matrix[i].mean())} for i, c in enumerate(cands) if c.method == "convex"])
    payload = {
        "dataset": ds.name, "digest": ds.digest, "n_queries": len(judged), "n_docs": len(ds.doc_ids),
        "depth": depth, "folds": folds, "seed": seed, "rrf_k": rrf_k,
        "methods": methods,
        "best_single": max(SINGLE, key=lambda n: methods[n]["ndcg@10"]),
        "best_fused": max(fused, key=lambda n: methods[n]["ndcg@10"]),
        "significance": significance,
        "cv_choices": {name: r.chosen for name, r in cv.items()},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "bm25": lexical.settings, "dense": {"model": dense.encoder.model_id,
                                             "search": "exact inner product"},
    }
    return HybridResults(ds.name, runs, tables, payload, curve, cv)


def write_outputs(result: HybridResults, out: Path) -> None:
    """``runs/NAME.trec``, ``per_query.csv``, ``weight_curve.csv``, ``comparison.md``, then ``metrics.json``
    last, so that a complete ``metrics.json`` means a complete result folder."""
    for name, run in result.runs.items():
        write_trec(run, out / "runs" / f"{name}.trec", tag=name)
    frame = pd.concat({n: t for n, t in result.per_query.items()}, names=["method", "query"]).reset_index()
    atomic_write_text(out / "per_query.csv", frame.to_csv(index=False))
    atomic_write_text(out / "weight_curve.csv", result.weight_curve.to_csv(index=False))
    atomic_write_text(out / "comparison.md", _markdown(result.payload))
    atomic_write_json(out / "metrics.json", result.payload)
