"""The tracking runners: how long logging takes (``workbench tracking-bench``), and the indexed sweep of
notebook 06 whose runs carry retrieval bundles, so that one can be registered as a model.

Both log through the tracking seam (:class:`~workbench.tracking.sink.TrackingSink`), so the benchmark
times exactly what every runner pays per point.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from workbench.data import load_dataset
from workbench.embed import Embedder, embed_dataset
from workbench.index.faiss import FaissIndex
from workbench.io import atomic_write_json
from workbench.tracking.bundle import write_retrieval_bundle
from workbench.tracking.context import cpu_model
from workbench.tracking.experiments import INDEX_BENCHMARKS, TRACKING_BENCH
from workbench.tracking.sink import ChildRun, Sink, TrackingSink
from workbench.tracking.store import (
    Store,
    ensure_experiment,
    sqlite_path,
    store_dir,
    unreachable_reason,
    with_retry,
)
from workbench.vectors.kernel import exact_topk
from workbench.vectors.recall import recall_ids

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset

BENCH_COMMAND = "workbench tracking-bench"


def config_run(row: Mapping[str, Any]) -> ChildRun:
    """A benchmark configuration: ``param_*`` fields as params, ``metric_*`` fields as metrics."""
    return ChildRun(row["name"], params={k: v for k, v in row.items() if k.startswith("param_")},
                    metrics={k: v for k, v in row.items() if k.startswith("metric_")})


def run_tracking_bench(store: Store, out_dir: str | Path, configs: int = 100, n_params: int = 10,
                       n_metrics: int = 10, uri: str | None = None) -> dict[str, Any]:
    """Log ``configs`` child runs (``n_params`` params, ``n_metrics`` metrics each) under one parent run;
    the figures go to ``out_dir/tracking_bench.json``.

    With ``uri=None`` a fresh SQLite store is made in a temp folder beside ``store`` (same disk) and deleted
    afterwards; creating its schema is timed apart (``setup_seconds``) since it happens once per store.
    Runs the benchmarked store cannot take wait in ``store``'s outbox. ``seconds`` covers the whole sweep:
    parent, children, and their context tags.
    """
    tmp: Path | None = None
    if uri is None:
        db = sqlite_path(store.uri)
        base = db.parent if db is not None else store_dir()
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
    target = Store(uri, store.outbox, store.timeout)
    try:
        start = time.perf_counter()
        c = target.client()
        if unreachable_reason(uri) is None:  # else the sweep below goes to the outbox, as any command's would
            ensure_experiment(c, TRACKING_BENCH)
        setup = time.perf_counter() - start
        sink = TrackingSink(target, TRACKING_BENCH, BENCH_COMMAND, config_run)
        start = time.perf_counter()
        with sink.sweep(f"bench {configs}x{n_params}x{n_metrics}", {"configs": configs}, None):
            for i in range(configs):
                sink.point({"name": f"config-{i}", **{f"param_{j}": i * j for j in range(n_params)},
                            **{f"metric_{j}": (i + 1) / (j + 1) for j in range(n_metrics)}})
        seconds = time.perf_counter() - start
        stored = 0
        if sink.parent_run_id is not None:
            runs = with_retry(c.search_runs, [c.get_experiment_by_name(TRACKING_BENCH).experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{sink.parent_run_id}'",
                              max_results=configs + 10)
            stored = len(runs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    target = Path(out_dir) / "tracking_bench.json"
    result = {"configs": configs, "params_per_run": n_params, "metrics_per_run": n_metrics,
              "seconds": round(seconds, 3), "runs_per_second": round(configs / seconds, 1),
              "setup_seconds": round(setup, 3), "runs_in_store": stored, "runs_queued": configs - stored,
              "store": "fresh temporary SQLite" if tmp else uri, "cpu": cpu_model(), "cores": os.cpu_count(),
              # the machine may be shared: its load during the measurement says how much the figure is worth
              "load_average_1min": round(os.getloadavg()[0], 2), "written": str(target)}
    atomic_write_json(target, result)
    return result


# -- notebook 06: a sweep whose every point can be registered -----------------------------------------
def bundle_run(row: Mapping[str, Any]) -> ChildRun:
    """A point of the registry sweep: configuration as params, recall and batch QPS, its bundle."""
    return ChildRun(row["name"], params={k: row[k] for k in ("factory", "k", "threads", "efSearch") if k in row},
                    metrics={"recall": row["recall"], "qps_batch": row["qps_batch"]}, artifacts=[row["bundle"]])


def registry_sink(store: Store, command: str) -> TrackingSink:
    """The sink that logs the registry sweep to ``store``'s ``index-benchmarks`` experiment."""
    return TrackingSink(store, INDEX_BENCHMARKS, command, bundle_run)


@dataclass
class RegistrySweep:
    """What the registry sweep measured (one row per point) and the indexes it built, to search again."""

    dataset: "BeirDataset"
    embedder: Embedder
    doc_ids: list[str]
    n_queries: int
    indexes: dict[str, FaissIndex]   # factory -> built index
    frame: pd.DataFrame

    def search_texts(self, factory: str, texts: Sequence[str], k: int,
                     query_params: Mapping[str, Any] | None = None) -> list[list[str]]:
        """The document ids the index ``factory`` returns for ``texts`` (embedded as the documents were)."""
        _, ids = self.indexes[factory].search(self.embedder.encode(list(texts)), k, **dict(query_params or {}))
        return [[self.doc_ids[j] for j in row if j >= 0] for row in ids]


def run_registry_sweep(dataset: str, out_dir: str | Path, sink: Sink, *, limit: int | None = None, k: int = 10,
                       hnsw: str = "HNSW32,Flat", ef_values: Sequence[int] = (8, 16, 32, 64, 128),
                       embedder: Embedder | None = None) -> RegistrySweep:
    """Exact search (faiss ``Flat``) and ``hnsw`` at each ``efSearch`` on a collection's embedded documents,
    each point with its recall@k against brute force, its batch QPS (all queries in one call on the index's
    threads) and a retrieval bundle in ``out_dir/bundles`` (so any point can be registered as a model)."""
    ds = load_dataset(dataset)
    embedder = embedder or Embedder(normalize=True, show_progress=False)
    doc_vecs, query_vecs = embed_dataset(ds, embedder, limit=limit)
    doc_ids = ds.doc_ids[:len(doc_vecs)]
    info = {"name": ds.name, "digest": ds.digest, "source": str(ds.path)}
    _, gt_ids = exact_topk(doc_vecs, query_vecs, k, "cosine")
    indexes, rows = {}, []
    with sink.sweep(f"sweep {ds.name} {hnsw}", {"dataset": ds.name, "k": k, "n_docs": len(doc_vecs)}, info):
        for factory, points in [("Flat", [{}]), (hnsw, [{"efSearch": ef} for ef in ef_values])]:
            index = indexes[factory] = FaissIndex(factory, metric="cosine")
            index.build(doc_vecs)
            for qp in points:
                name = f"faiss:{factory}" + "".join(f" {p}={v}" for p, v in qp.items())
                bundle = write_retrieval_bundle(Path(out_dir) / "bundles" / name.replace(":", "_").replace(" ", "_"),
                                                index, doc_ids, metric="cosine", embedding_model=embedder.model_id,
                                                query_params=qp, k=k, dataset=info)
                start = time.perf_counter()
                _, ids = index.search(query_vecs, k, **qp)
                seconds = time.perf_counter() - start
                row = {"name": name, "factory": factory, "k": k, "threads": index.threads, **qp,
                       "recall": float(recall_ids(ids, gt_ids, k).mean()), "qps_batch": len(query_vecs) / seconds,
                       "bundle": bundle}
                sink.point(row)
                rows.append(row)
    return RegistrySweep(ds, embedder, doc_ids, len(query_vecs), indexes, pd.DataFrame(rows))
