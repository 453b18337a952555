"""The embedding-backend trade-off (issue 13, notebook 01): per backend, its encoding speed against a bare
PyTorch ``encode`` on the same texts and the min/mean cosine of its vectors to PyTorch's
(:func:`workbench.embed.throughput.compare_backends`), and its nDCG@10 cost on each collection: dense
retrieval, RRF (k=60) with BM25 and the best cross-validated fusion, evaluated exactly as ``workbench hybrid
DATASET --backend B`` evaluates them (:func:`workbench.hybrid.experiment.evaluate_fusion`).

Writes ``DIR/embed_backends.json`` (the summary), ``DIR/embed_backends.csv`` (one row per backend and
collection) and ``DIR/embed_backends.png`` (throughput against fidelity and against nDCG@10).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.data import load_dataset
from workbench.data.beir import BeirDataset
from workbench.embed import Embedder, embed_dataset
from workbench.embed.throughput import compare_backends
from workbench.errors import DatasetError
from workbench.hybrid.evaluate import judged_queries
from workbench.hybrid.experiment import evaluate_fusion
from workbench.io import atomic_write_json, atomic_write_text
from workbench.plotting import pyplot, save_png
from workbench.tracking.experiments import EMBEDDINGS
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

METRICS = ("dense", "rrf", "fused")                # the nDCG@10 columns: dense alone, RRF, best CV fusion


@dataclass
class BackendTradeoff:
    """One row per (backend, collection) in ``frame``; the throughput run; the summary; the figure."""

    frame: pd.DataFrame
    throughput: dict[str, Any]
    summary: dict[str, Any]
    figure: Path


def first_documents(ds: BeirDataset, limit: int | None) -> BeirDataset:
    """``ds`` cut to its first ``limit`` documents, the judgements of those, and the queries that still have a
    relevant document among them (an nDCG over the cut collection, for quick runs); ``ds`` itself when
    ``limit`` is None or covers it."""
    if limit is None or limit >= len(ds.corpus):
        return ds
    corpus = ds.corpus.iloc[:limit].reset_index(drop=True)
    kept = set(corpus["_id"])
    qrels = {q: {d: g for d, g in docs.items() if d in kept} for q, docs in ds.qrels.items()}
    qrels = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if len(qrels) < 2:
        raise DatasetError(f"{ds.name}: the first {limit} documents leave {len(qrels)} judged queries; "
                           "at least 2 are needed (raise the limit)")
    queries = ds.queries[ds.queries["_id"].isin(qrels)].reset_index(drop=True)
    return dataclasses.replace(ds, corpus=corpus, queries=queries, qrels=qrels,
                               digest=f"{ds.digest}:first{limit}")


def _cosines(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.einsum("nd,nd->n", x, y) for x, y in zip(a, b)])


def run_embed_backends(datasets: Sequence[str | BeirDataset], out_dir: str | Path,
                       backends: Sequence[str] = ("onnx", "onnx-int8"), *, limit: int | None = None,
                       bench_texts: int = 300, repeats: int = 3, folds: int = 5,
                       cache_dir: str | Path | None = None, sink: Sink | None = None,
                       progress: bool = False) -> BackendTradeoff:
    """Throughput of ``backends`` against bare PyTorch on the first ``bench_texts`` documents of the first
    collection (best of ``repeats`` interleaved passes), then each backend's (and PyTorch's) nDCG@10 on every
    collection, cut to its first ``limit`` documents (:func:`first_documents`), with the min/mean cosine of
    its document and query vectors to PyTorch's."""
    backends = [b for b in backends if b != "torch"]
    if not backends or not datasets:
        raise DatasetError("the backend trade-off needs at least one backend besides torch and one collection")
    loaded = [first_documents(d if isinstance(d, BeirDataset) else load_dataset(str(d)), limit) for d in datasets]
    out = Path(out_dir)
    sink = sink or NullSink()
    params = {"backends": ",".join(backends), "datasets": ",".join(d.name for d in loaded), "limit": limit,
              "bench_texts": bench_texts, "repeats": repeats, "folds": folds}
    first = loaded[0]
    with sink.sweep("embedding backends", params, {"name": first.name, "digest": first.digest,
                                                  "source": str(first.path)}):
        throughput = compare_backends(first.doc_texts()[:bench_texts], backends, repeats=repeats,
                                      cache_dir=cache_dir)
        throughput["dataset"] = first.name
        speed = {"torch": {"texts_per_s": throughput["bare_texts_per_s"], "speedup": 1.0,
                           "bench_min_cosine": 1.0, "bench_mean_cosine": 1.0}}
        speed.update({r["backend"]: {"texts_per_s": r["texts_per_s"], "speedup": r["speedup"],
                                     "bench_min_cosine": r["min_cosine"], "bench_mean_cosine": r["mean_cosine"]}
                      for r in throughput["backends"]})
        rows = []
        for ds in loaded:
            k_folds = min(folds, len(judged_queries(ds.qrels)))
            reference = None
            for backend in ("torch", *backends):
                emb = Embedder(backend=backend, cache_dir=cache_dir, show_progress=progress)
                result = evaluate_fusion(ds, folds=k_folds, embedder=emb)
                vectors = embed_dataset(ds, emb)                   # from the cache evaluate_fusion filled
                reference = vectors if backend == "torch" else reference
                cos = _cosines(vectors, reference)
                m, best = result.metrics, result.payload["best_fused"]
                row = {"backend": backend, "dataset": ds.name, "n_docs": len(ds.corpus),
                       "n_queries": result.payload["n_queries"], **speed[backend],
                       "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                       "dense_ndcg@10": m["dense"]["ndcg@10"], "rrf_ndcg@10": m["rrf"]["ndcg@10"],
                       "fused_ndcg@10": m[best]["ndcg@10"], "fused_method": best}
                rows.append(row)
        frame = pd.DataFrame(rows)
        for metric in METRICS:
            base = frame[frame["backend"] == "torch"].set_index("dataset")[f"{metric}_ndcg@10"]
            frame[f"{metric}_delta"] = frame[f"{metric}_ndcg@10"] - frame["dataset"].map(base)
        for row in frame.to_dict("records"):
            sink.point(row)
        figure = plot_tradeoff(frame, out / "embed_backends.png", f"texts/s: {throughput['n_texts']} {first.name} "
                               f"documents, best of {repeats}; nDCG@10: {', '.join(d.name for d in loaded)}")
        summary = _summary(frame, throughput, params)
        atomic_write_text(out / "embed_backends.csv", frame.to_csv(index=False))
        atomic_write_json(out / "embed_backends.json", {**summary, "throughput": throughput,
                                                        "rows": frame.to_dict("records")})
        sink.attach("results", [out / "embed_backends.json", out / "embed_backends.csv", figure],
                    metrics={f"{b}_max_abs_ndcg_delta": v["max_abs_ndcg_delta"]
                             for b, v in summary["backends"].items() if b != "torch"})
    return BackendTradeoff(frame, throughput, summary, figure)


def _summary(frame: pd.DataFrame, throughput: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Per backend: speed-up, fidelity, and per collection the nDCG@10 of each method and its change."""
    backends: dict[str, Any] = {}
    for backend, rows in frame.groupby("backend", sort=False):
        r0 = rows.iloc[0]
        deltas = rows[[f"{m}_delta" for m in METRICS]].abs().to_numpy()
        backends[backend] = {
            "texts_per_s": float(r0["texts_per_s"]), "speedup": float(r0["speedup"]),
            "bench_min_cosine": float(r0["bench_min_cosine"]), "bench_mean_cosine": float(r0["bench_mean_cosine"]),
            "min_cosine": float(rows["min_cosine"].min()), "mean_cosine": float(rows["mean_cosine"].mean()),
            "max_abs_ndcg_delta": float(deltas.max()),
            "ndcg@10": {r["dataset"]: {**{m: float(r[f"{m}_ndcg@10"]) for m in METRICS},
                                       "fused_method": r["fused_method"]} for r in rows.to_dict("records")},
            "ndcg_delta": {r["dataset"]: {m: float(r[f"{m}_delta"]) for m in METRICS} for r in rows.to_dict("records")},
        }
    return {"params": dict(params), "n_bench_texts": throughput["n_texts"], "backends": backends}


def plot_tradeoff(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Left: texts/s against the mean cosine to PyTorch (bar down to the minimum); right: texts/s against
    nDCG@10, one line per collection and method across the backends."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    speed = frame.drop_duplicates("backend")
    for r in speed.to_dict("records"):
        left.errorbar(r["texts_per_s"], r["bench_mean_cosine"],
                      yerr=[[r["bench_mean_cosine"] - r["bench_min_cosine"]], [0.0]], fmt="o", capsize=3)
        left.annotate(f"{r['backend']} ({r['speedup']:.2f}x)", (r["texts_per_s"], r["bench_mean_cosine"]),
                      textcoords="offset points", xytext=(5, 5), fontsize=8)
    left.set(xlabel="texts/s", ylabel="cosine to PyTorch (mean; bar to min)", title="throughput vs fidelity")
    for (dataset, metric), style in zip([(d, m) for d in frame["dataset"].unique() for m in ("dense", "rrf")],
                                        ["o-", "s--"] * frame["dataset"].nunique()):
        rows = frame[frame["dataset"] == dataset].sort_values("texts_per_s")
        right.plot(rows["texts_per_s"], rows[f"{metric}_ndcg@10"], style, label=f"{dataset} {metric}")
        for r in rows.to_dict("records"):
            right.annotate(r["backend"], (r["texts_per_s"], r[f"{metric}_ndcg@10"]), textcoords="offset points",
                           xytext=(4, 4), fontsize=7)
    right.set(xlabel="texts/s", ylabel="nDCG@10", title="throughput vs nDCG@10")
    right.legend(fontsize=7)
    fig.suptitle(title)
    return save_png(fig, path)


def tracking_sink(store: Store, command: str = "embedding backends") -> TrackingSink:
    """The sink that logs the trade-off to ``store``'s ``embeddings`` experiment, a child run per row."""
    def to_run(row: Mapping[str, Any]) -> ChildRun:
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("n_docs", "n_queries")}
        return ChildRun(f"{row['dataset']}:{row['backend']}",
                        params={k: row[k] for k in ("backend", "dataset", "n_docs", "n_queries", "fused_method")},
                        metrics=metrics, tags={"dataset": row["dataset"], "backend": row["backend"]})
    return TrackingSink(store, EMBEDDINGS, command, to_run)
