"""The hybrid-search runners: BM25, dense and fused retrieval evaluated on one collection's judgements
(``workbench hybrid``, notebook 05; ``workbench.hybrid.experiment``) with its result folder and its report to
a sink (the collection as the sweep, each method as a point, the result files and the retrieval bundle on
the parent); and the speed figures of ``workbench hybrid-bench``.

The bundle (``workbench.tracking.bundle.write_hybrid_bundle``) is what ``workbench register`` turns into a
model: BM25, the dense document vectors, the embedding model, and one fusion configuration, chosen as
:func:`deployed_fusion` says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench.data import load_dataset
from workbench.hybrid.bench import bm25_timings, fusion_timings
from workbench.hybrid.dense import DenseRetriever
from workbench.hybrid.evaluate import DEFAULT_METRICS, metric_matrix, per_query
from workbench.hybrid.experiment import OUTPUT_FILES, HybridResults, evaluate_fusion, write_outputs
from workbench.hybrid.fusion import fuse
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.tuning import RRF_K_GRID, WEIGHT_GRID, candidates
from workbench.io import atomic_write_json
from workbench.tracking.bundle import BUNDLE_DIR, write_hybrid_bundle
from workbench.tracking.experiments import HYBRID
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset
    from workbench.embed import Embedder
    from workbench.hybrid.runs import Run


def method_run(row: Mapping[str, Any]) -> ChildRun:
    """A method's row as a child run: its settings as params, its IR metrics, its TREC run file."""
    params: dict[str, Any] = {"method": row["method"], "depth": row["depth"]}
    if row.get("cv_choices") is not None:
        params["cv_choices"] = row["cv_choices"]
    return ChildRun(f"{row['dataset']}:{row['method']}", params=params,
                    metrics={m: row[m] for m in DEFAULT_METRICS},
                    tags={"dataset": row["dataset"], "method": row["method"]},
                    artifacts=[row["run_file"]] if row.get("run_file") else [])


def tracking_sink(store: Store, command: str = "workbench hybrid") -> TrackingSink:
    """The sink that logs an evaluation to ``store``'s ``hybrid`` experiment."""
    return TrackingSink(store, HYBRID, command, method_run)


def method_rows(result: HybridResults, out: Path | None) -> list[dict[str, Any]]:
    """One row per method: collection, method, depth, cross-validated choices, metrics, run file."""
    p = result.payload
    rows = []
    for name, metrics in p["methods"].items():
        choices = p["cv_choices"].get(name)
        rows.append({"dataset": p["dataset"], "method": name, "depth": p["depth"],
                     "cv_choices": None if choices is None else [c["params"] for c in choices], **metrics,
                     "run_file": None if out is None else out / "runs" / f"{name}.trec"})
    return rows


def run_hybrid(dataset: "str | Path | BeirDataset", out_dir: str | Path | None = None, folds: int = 5,
               depth: int = 100, seed: int = 0, rrf_k: float = 60.0, embedder: "Embedder | None" = None,
               sink: Sink | None = None, backend: str = "torch") -> HybridResults:
    """Evaluate BM25, dense and their fusions on ``dataset`` (a name, a BEIR folder or a loaded dataset).

    ``backend`` (or ``embedder``'s) runs the embedding model (``workbench.embed.backends``); the dense
    vectors come from that backend's own cache namespace, and ``metrics.json`` names it under ``dense``.
    With ``out_dir`` the result folder is written there (``metrics.json`` last) and attached to the sweep.
    """
    from workbench.embed import Embedder

    ds = dataset if hasattr(dataset, "qrels") else load_dataset(str(dataset))
    embedder = embedder or Embedder(normalize=True, show_progress=False, backend=backend)
    sink = sink or NullSink()
    out = None if out_dir is None else Path(out_dir)
    params = {"depth": depth, "folds": folds, "seed": seed, "rrf_k": rrf_k}
    if embedder.backend != "torch":                 # torch runs keep the params they had before backends
        params.update(backend=embedder.backend, embedding_variant=embedder.variant)
    with sink.sweep(f"hybrid {ds.name}", params, {"name": ds.name, "digest": ds.digest, "source": str(ds.path)}):
        result = evaluate_fusion(ds, folds=folds, depth=depth, seed=seed, rrf_k=rrf_k, embedder=embedder)
        result.payload["dense"].update(backend=embedder.backend, variant=embedder.variant)
        if out is not None:
            write_outputs(result, out)
        for row in method_rows(result, out):
            sink.point(row)
        if out is not None:
            best = result.payload["best_fused"]
            sink.attach("results", [out / name for name in OUTPUT_FILES],
                        metrics={"best_fused_ndcg_at_10": result.metrics[best]["ndcg@10"],
                                 "best_single_ndcg_at_10": result.metrics[result.payload["best_single"]]["ndcg@10"]})
            folder = write_bundle(ds, result, out, embedder)
            figures = json.loads((folder / "retrieval.json").read_text())["figures"]
            result.payload["bundle"] = {"path": str(folder), **figures}
            sink.attach(BUNDLE_DIR, sorted(folder.iterdir()),
                        metrics={"bundle_ndcg_at_10": figures["ndcg@10"]})
    return result


def deployed_fusion(result: HybridResults, lexical: "Run", dense: "Run", qrels: Mapping) -> tuple[dict, str]:
    """The one fusion configuration a model ships: the fused method with the best cross-validated nDCG@10,
    with its parameters (when it has tuned ones) set to the grid point best over all judged queries, the
    choice each fold makes on its training queries, made on all of them (ties: the earlier grid point,
    as in ``tuning.cross_validate``). Returns ``{"method", "params"}`` and a sentence saying how."""
    p = result.payload
    name = p["best_fused"]
    fixed = {"rrf": {"k": p["rrf_k"]}, "combsum": {}, "combmnz": {}}
    folds = f"{p['folds']}-fold cross-validation over queries"
    if name in fixed:
        return ({"method": name, "params": fixed[name]},
                f"`{name}` had the best held-out nDCG@10 of the fused methods ({folds}); it has no tuned parameter.")
    if name == "rrf_cv":
        cands = candidates(lexical, dense, p["depth"], weights=(), norms=(), rrf_ks=RRF_K_GRID)
    else:
        norm = {"convex": "tmm", "convex_minmax": "minmax", "convex_zscore": "zscore"}[name]
        cands = candidates(lexical, dense, p["depth"], weights=WEIGHT_GRID, norms=(norm,), rrf_ks=())
    best = cands[int(np.argmax(metric_matrix([c.run for c in cands], qrels, "ndcg@10").mean(axis=1)))]
    per_fold = ", ".join(json.dumps(c["params"]) for c in p["cv_choices"][name])
    return ({"method": best.method, "params": best.params},
            f"`{name}` had the best held-out nDCG@10 of the fused methods ({folds}; the folds chose {per_fold}); "
            f"the shipped parameters are the grid point best over all judged queries.")


def write_bundle(ds: "BeirDataset", result: HybridResults, out: Path, embedder: "Embedder") -> Path:
    """``out/retrieval_index/``: BM25 and dense rebuilt from the collection as the evaluation built them,
    the :func:`deployed_fusion` configuration, and its nDCG@10 measured with exactly these components."""
    p = result.payload
    lexical = BM25Retriever(**p["bm25"]).index(ds.doc_texts(), ds.doc_ids)
    dense, query_vecs = DenseRetriever.from_dataset(ds, embedder)
    pair = [lexical.retrieve(ds.query_texts(), p["depth"], ds.query_ids, name="bm25"),
            dense.retrieve_vectors(query_vecs, p["depth"], ds.query_ids, name="dense")]
    fusion, how = deployed_fusion(result, pair[0], pair[1], ds.qrels)
    run = fuse(pair, fusion["method"], p["depth"], name="bundle", **fusion["params"])
    ndcg = float(per_query(run, ds.qrels, ["ndcg@10"])["ndcg@10"].mean())
    best_single = p["best_single"]
    figures = {"ndcg@10": ndcg, "heldout_ndcg@10": p["methods"][p["best_fused"]]["ndcg@10"],
               "method": p["best_fused"], "best_single": best_single,
               "best_single_ndcg@10": p["methods"][best_single]["ndcg@10"], "n_queries": p["n_queries"],
               "folds": p["folds"], "depth": p["depth"]}
    folder = write_hybrid_bundle(out, lexical, dense.doc_vectors, embedding_model=embedder.model_id,
                                 embedding_backend=embedder.backend, fusion=fusion, depth=p["depth"], normalize=True,
                                 dataset={"name": ds.name, "digest": ds.digest, "source": str(ds.path)},
                                 figures=figures, chosen_by=how)
    return folder


def run_hybrid_bench(datasets: Sequence[str], out_dir: str | Path, queries: int = 1000, candidates: int = 1000,
                     repeats: int = 3) -> dict[str, Any]:
    """BM25 index + retrieval time per collection and fusion time against ranx (``workbench.hybrid.bench``),
    written to ``out_dir/hybrid.json``."""
    target = Path(out_dir) / "hybrid.json"
    payload = {"bm25": bm25_timings(datasets, repeats), "fusion": fusion_timings(queries, candidates, repeats),
               "written": str(target)}
    atomic_write_json(target, payload)
    return payload
