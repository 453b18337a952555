"""The hybrid-search runners: BM25, dense and fused retrieval evaluated on one collection's judgements
(``workbench hybrid``, notebook 05; ``workbench.hybrid.experiment``) with its result folder and its report to
a sink (the collection as the sweep, each method as a point, the result files on the parent); and the speed
figures of ``workbench hybrid-bench``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from workbench.data import load_dataset
from workbench.hybrid.bench import bm25_timings, fusion_timings
from workbench.hybrid.evaluate import DEFAULT_METRICS
from workbench.hybrid.experiment import OUTPUT_FILES, HybridResults, evaluate_fusion, write_outputs
from workbench.io import atomic_write_json
from workbench.tracking.experiments import HYBRID
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset
    from workbench.embed import Embedder


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
               sink: Sink | None = None) -> HybridResults:
    """Evaluate BM25, dense and their fusions on ``dataset`` (a name, a BEIR folder or a loaded dataset).

    With ``out_dir`` the result folder is written there (``metrics.json`` last) and attached to the sweep.
    """
    ds = dataset if hasattr(dataset, "qrels") else load_dataset(str(dataset))
    sink = sink or NullSink()
    out = None if out_dir is None else Path(out_dir)
    params = {"depth": depth, "folds": folds, "seed": seed, "rrf_k": rrf_k}
    with sink.sweep(f"hybrid {ds.name}", params, {"name": ds.name, "digest": ds.digest, "source": str(ds.path)}):
        result = evaluate_fusion(ds, folds=folds, depth=depth, seed=seed, rrf_k=rrf_k, embedder=embedder)
        if out is not None:
            write_outputs(result, out)
        for row in method_rows(result, out):
            sink.point(row)
        if out is not None:
            best = result.payload["best_fused"]
            sink.attach("results", [out / name for name in OUTPUT_FILES],
                        metrics={"best_fused_ndcg_at_10": result.metrics[best]["ndcg@10"],
                                 "best_single_ndcg_at_10": result.metrics[result.payload["best_single"]]["ndcg@10"]})
    return result


def run_hybrid_bench(datasets: Sequence[str], out_dir: str | Path, queries: int = 1000, candidates: int = 1000,
                     repeats: int = 3) -> dict[str, Any]:
    """BM25 index + retrieval time per collection and fusion time against ranx (``workbench.hybrid.bench``),
    written to ``out_dir/hybrid.json``."""
    target = Path(out_dir) / "hybrid.json"
    payload = {"bm25": bm25_timings(datasets, repeats), "fusion": fusion_timings(queries, candidates, repeats),
               "written": str(target)}
    atomic_write_json(target, payload)
    return payload
