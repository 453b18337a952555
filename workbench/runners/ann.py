"""The ANN benchmark runner (``workbench ann``, notebooks 02 and 03): a recall/QPS sweep of vector indexes
with its results file, summary (best QPS at recall 0.90/0.95/0.99, the reference comparison) and figures.

Measurement is the harness's (``workbench.bench.harness``: ann-benchmarks' protocol); this module decides
what is swept, reports it through a :class:`~workbench.tracking.sink.Sink` and summarises it. With
``keep=0.95`` (``--keep best@0.95``) the fastest point reaching that recall is rebuilt and saved as a
retrieval bundle (``workbench.tracking.bundle``) on the parent run, so ``workbench register`` can ship it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from workbench.bench.data import load_bench_data
from workbench.bench.harness import DEFAULT_RUNS, RESULTS_FILE, BenchSet, Executor, run_sweep
from workbench.bench.overhead import measure_overhead
from workbench.bench.pareto import summary_table
from workbench.bench.plots import plot_build_size, plot_recall_qps
from workbench.bench.reference import REFERENCE_FIGURES, default_specs, family_tour_specs, reference_specs
from workbench.data import load_dataset
from workbench.embed.sets import VECTOR_SUFFIXES
from workbench.errors import IndexSpecError
from workbench.index.metrics import METRICS
from workbench.index.spec import IndexSpec, parse_spec
from workbench.io import atomic_write_json
from workbench.tracking.bundle import BUNDLE_DIR, write_retrieval_bundle
from workbench.tracking.experiments import INDEX_BENCHMARKS
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store
from workbench.vectors.recall import recall_ties

PRESETS = ("default", "reference", "tour")  # tour: one build per family, two or three points (notebook 02)
PARAM_COLUMNS = ("index", "family", "library", "build_params", "query_params", "k", "threads", "batch_threads",
                 "dataset", "metric", "n_base", "n_queries", "dim")


@dataclass
class AnnResult:
    """One sweep: the data it ran on, the specs, every measured row, the figures and the summary."""

    data: BenchSet
    specs: list[IndexSpec]
    frame: pd.DataFrame
    figures: dict[str, Path]
    summary: dict[str, Any]


def point_run(row: Mapping[str, Any]) -> ChildRun:
    """A measured point as a child run: its configuration as params (query parameters as ``q.NAME``),
    every registered metric (``workbench.index.metrics``)."""
    params = {c: row[c] for c in PARAM_COLUMNS}
    params.update({f"q.{k}": v for k, v in json.loads(row["query_params"]).items()})
    return ChildRun(row["point"], params=params, metrics={m: row[m] for m in METRICS},
                    tags={"family": row["family"], "node": row.get("node", "")})


def tracking_sink(store: Store, command: str = "workbench ann") -> TrackingSink:
    """The sink that logs a sweep to ``store``'s ``index-benchmarks`` experiment."""
    return TrackingSink(store, INDEX_BENCHMARKS, command, point_run)


def resolve_specs(data: BenchSet, specs: Sequence[IndexSpec], preset: str | None) -> list[IndexSpec]:
    """``specs`` plus the ``preset``'s; without either, the default sweep over every family."""
    out = list(specs)
    n, dim = data.base.shape
    if preset == "reference":
        out += reference_specs()
    elif preset == "tour":
        out += family_tour_specs(n, dim)
    elif preset == "default" or not out:
        out += default_specs(n, dim)
    return out


def run_ann(data: str | BenchSet, out_dir: str | Path, *, specs: Sequence[str | IndexSpec] = (),
            preset: str | None = None, k: int = 10, threads: int = 1, runs: int = DEFAULT_RUNS,
            budget_s: float = 10.0, batch_threads: int | None = None, sink: Sink | None = None,
            progress: bool = True, keep: float | None = None, ray: str | None = None) -> AnnResult:
    """Sweep ``specs`` (and/or a ``preset``) on ``data`` (a DATA string as for ``workbench ann``, or a
    loaded :class:`BenchSet`); write ``out_dir/results.parquet`` (resumable), ``summary.json`` and the
    recall/QPS, batch-QPS and build/size figures; report the sweep, each point and the outputs to ``sink``.

    SPEC strings are parsed before any data is loaded, so a typo fails in a second, not after embedding.
    ``keep`` (a recall target): see :func:`keep_best`; its outcome is ``summary["kept"]``. ``ray`` (``auto``,
    ``local`` or ``HOST:PORT``): measure each build configuration as a task on that Ray cluster
    (``workbench.services.ray.connect``); the rows still go to ``out_dir`` from this process only.
    """
    if keep is not None and not 0 < keep <= 1:
        raise IndexSpecError(f"--keep best@{keep}: the recall target must be in (0, 1]")
    source = data if isinstance(data, str) else None
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    if preset is not None and preset not in PRESETS:
        raise IndexSpecError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if isinstance(data, str):
        data = load_bench_data(data, progress=progress)
    sweep = resolve_specs(data, parsed, preset)
    out = Path(out_dir)
    sink = sink or NullSink()
    batch_threads = batch_threads or os.cpu_count() or 1
    params = {"k": k, "threads": threads, "batch_threads": batch_threads, "runs": runs, "budget_s": budget_s,
              "specs": " ".join(s.text for s in sweep)}
    if ray is not None:
        params["ray"] = ray
    with sink.sweep(f"sweep {data.name} k={k} threads={threads}", params, data.dataset_info):
        executor = connect_executor(ray)
        try:
            df = run_sweep(data, sweep, k=k, threads=threads, out_dir=out, runs=runs, batch_threads=batch_threads,
                           on_point=sink.point, progress=progress, budget_s=budget_s, executor=executor)
        finally:
            if executor is not None:
                executor.close()
        df = df[df["dataset_digest"] == data.digest]      # a resumed file may hold other data sets' rows
        figures = {
            "recall_qps": plot_recall_qps(df, out / "recall_qps.png"),
            "recall_batch_qps": plot_recall_qps(
                df, out / "recall_batch_qps.png", y="batch_qps",
                title=f"Recall vs batch QPS (all {df['batch_threads'].iloc[0]} threads, one call) — "
                      f"{data.name}, recall@{k}"),
            "build_size": plot_build_size(df, out / "build_size.png"),
        }
        summary = summarise(data, df, k, threads, out, figures, preset == "reference")
        if keep is not None:
            summary["kept"] = keep_best(data, sweep, df, keep, k, out, source, sink)
        atomic_write_json(out / "summary.json", summary)
        sink.attach("report", [out / RESULTS_FILE, out / "summary.json", *figures.values()],
                    metrics={"n_points": len(df)})
    return AnnResult(data, sweep, df, figures, summary)


def connect_executor(ray: str | None) -> Executor | None:
    """The Ray executor at ``ray`` (imported only when asked for: ray is slow to import), else None."""
    if ray is None:
        return None
    from workbench.services.ray import connect

    return connect(ray)


def keep_best(data: BenchSet, specs: Sequence[IndexSpec], df: pd.DataFrame, target: float, k: int, out: Path,
              source: str | None, sink: Sink) -> dict[str, Any]:
    """Rebuild the point with the highest single-query QPS among those with recall >= ``target``, save it
    as ``out/retrieval_index/`` (document ids and embedding model when ``source`` names a text collection,
    else row positions and vectors only) and attach it to the sweep; its recall is measured again on the
    rebuilt index (graph builds need not be bit-identical). Returns what was kept, or why nothing was."""
    ok = df[df["recall"] >= target]
    if ok.empty:
        best = df.loc[df["recall"].idxmax()]
        return {"target": target, "point": None,
                "reason": f"no point reached recall {target}; the best was {best['recall']:.4f} ({best['point']})"}
    row = ok.loc[ok["qps"].idxmax()]
    spec = next(s for s in specs if s.label == row["index"])
    query_params = json.loads(row["query_params"])
    index = spec.make(data.metric)
    index.build(data.base)
    if query_params:
        index.set_query_params(**query_params)
    _, ids = index.search(data.queries, k)
    recall = float(recall_ties(data.base, data.queries, ids, data.gt_distances, k, data.metric).mean())
    doc_ids, model = [str(i) for i in range(len(data.base))], None
    if source is not None and source != "sentences" and not source.startswith("synthetic") \
            and Path(source).suffix.lower() not in VECTOR_SUFFIXES:
        from workbench.embed import Embedder

        doc_ids, model = load_dataset(source).doc_ids, Embedder(normalize=True, show_progress=False).model_id
    folder = write_retrieval_bundle(out, index, doc_ids, metric=data.metric, embedding_model=model,
                                    query_params=query_params, k=k, dataset=data.dataset_info)
    sink.attach(BUNDLE_DIR, sorted(folder.iterdir()),
                metrics={"kept_recall": recall, "kept_qps": float(row["qps"]), "kept_target": target})
    return {"target": target, "point": row["point"], "qps": float(row["qps"]), "recall_sweep": float(row["recall"]),
            "recall_rebuilt": recall, "bundle": str(folder), "embedding_model": model}


def summarise(data: BenchSet, df: pd.DataFrame, k: int, threads: int, out: Path, figures: Mapping[str, Path],
              with_reference: bool) -> dict[str, Any]:
    """What ``summary.json`` holds: the data set, the best QPS at each recall target per family and, for the
    reference preset, the figures quoted in issue 3 beside the ones measured here."""
    summary: dict[str, Any] = {
        "dataset": {**data.dataset_info, "n_base": len(data.base), "n_queries": len(data.queries),
                    "dim": int(data.base.shape[1]), "metric": data.metric},
        "k": k, "threads": threads, "batch_threads": int(df["batch_threads"].iloc[0]), "n_points": len(df),
        "best_qps_at_recall": summary_table(df),
        "results": str(out / RESULTS_FILE), "plots": [str(p) for p in figures.values()],
    }
    if with_reference:
        summary["reference"] = reference_comparison(df)
    return summary


def reference_comparison(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Each reference point's quoted recall and QPS beside the measured ones (None where not measured)."""
    rows = []
    for point, (rec, qps) in REFERENCE_FIGURES.items():
        match = df[df["point"] == point]
        got = match.iloc[0] if len(match) else None
        rows.append({"point": point, "quoted_recall": rec, "quoted_qps": qps,
                     "recall": None if got is None else float(got["recall"]),
                     "qps": None if got is None else float(got["qps"])})
    return rows


def overhead_specs(n: int, dim: int) -> list[IndexSpec]:
    """Every family of the default sweep at one query point: the middle value of each swept parameter."""
    return [IndexSpec(s.library, s.build, {name: (vs[len(vs) // 2],) for name, vs in s.sweep.items()})
            for s in default_specs(n, dim)]


def run_overhead(data: str | BenchSet, out_dir: str | Path, specs: Sequence[str | IndexSpec] = (),
                 k: int = 10, threads: int = 1, runs: int = 10, progress: bool = True) -> dict[str, Any]:
    """The harness's single-query QPS against a bare library loop (``workbench.bench.overhead``) for every
    point of ``specs`` (default: :func:`overhead_specs`); written to ``out_dir/overhead.json``."""
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    if isinstance(data, str):
        data = load_bench_data(data, progress=progress)
    parsed = parsed or overhead_specs(*data.base.shape)
    rows = [r for spec in parsed for r in measure_overhead(data, spec, k=k, threads=threads, runs=runs)]
    target = Path(out_dir) / "overhead.json"
    payload = {"dataset": data.dataset_info, "n_base": len(data.base), "n_queries": len(data.queries),
               "results": rows, "written": str(target)}
    atomic_write_json(target, payload)
    return payload
