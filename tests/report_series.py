"""A recorded `workbench run` for the report tests: notebook folders shaped like the real ones (results
taken from a CI run of the series), real matplotlib figures, logged the way `workbench.series` logs them."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.plotting import pyplot, save_png
from workbench.series import record_notebook
from workbench.tracking.experiments import SERIES
from workbench.tracking.runs import attach_outputs, parent_run
from workbench.tracking.store import Store

RESULTS = {
    "03_recall_latency_tradeoffs": {
        "dataset": "synthetic-n4000-d32", "n_points": 4, "n_queries": 100, "threads": 1, "k": 10,
        "best_qps_at_recall": {
            "faiss:HNSW,Flat": {t: {"point": "faiss:HNSW32,Flat?efSearch=16", "qps": 82714.149, "recall": 0.9994}
                                for t in ("0.90", "0.95", "0.99")},
            "faiss:IVF,PQ": {"0.90": None, "0.95": None, "0.99": None}}},
    "05_hybrid_fusion": {
        "folds": 5, "seed": 0, "searcher": {"searches": 60, "latency_p50_ms": 0.47, "latency_p99_ms": 6.5,
                                             "cache_hit_rate": 0.5, "failures": 0},
        "datasets": {"medline": {"best_single": "dense", "best_fused": "convex",
                                 "ndcg@10": {"bm25": 0.6957, "dense": 0.7875, "convex": 0.8007},
                                 "p_vs_best_single": {"bm25": 0.0072, "convex": 0.4772}}}},
    "07_feature_store_point_in_time": {
        "n_accounts": 300, "days": 120, "train_days": 60, "label_delay_days": 14, "n_transactions": 20292,
        "fraud_rate": 0.0109, "naive_auc_offline": 0.9765, "naive_auc_later": 0.7295, "pit_auc_offline": 0.8229,
        "pit_auc_later": 0.8229, "online_status_amount": {"present": 283}},
}
FIGURES = {"03_recall_latency_tradeoffs": "recall_qps.png", "05_hybrid_fusion": "weight_curves.png",
           "07_feature_store_point_in_time": "scores.png"}


def _figure(path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([0.5, 0.8, 0.95, 1.0], [9e4, 6e4, 3e4, 1e4], marker="o", label="faiss:HNSW32,Flat")
    ax.set(xlabel="recall@10", ylabel="QPS", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    save_png(fig, path)


def record_series(store: Store, out: Path, ci: bool = True) -> str:
    """Log a three-notebook series in ``store``; returns its parent run id."""
    with parent_run(store, SERIES, "series test", {"ci": ci, "notebooks": ",".join(RESULTS)},
                    tags={"workbench.run_group": "testgroup"}, command="workbench run") as run_id:
        for i, (stem, results) in enumerate(RESULTS.items()):
            nb_out = out / stem
            nb_out.mkdir(parents=True, exist_ok=True)
            (nb_out / "results.json").write_text(json.dumps(results))
            _figure(nb_out / FIGURES[stem], stem)
            record_notebook(store, "testgroup", stem, nb_out, 10.0 + i, ci)
        attach_outputs("series", (), {"total_wall_time_s": 33.0})
    assert run_id is not None
    return run_id
