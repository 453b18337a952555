"""The database experiments of issue 10 (``workbench db-filtered|concurrency|tiered|updates``, notebook 08):
filtered search inside the database beside the in-process strategies, concurrent clients, tiered storage
and updates. Each runner builds what it measures, writes ``<name>.parquet``, its figure and ``<name>.json``
(the summary) into ``out_dir``, and reports the sweep, each row and the outputs through a
:class:`~workbench.tracking.sink.Sink` (experiment ``index-benchmarks``, child runs tagged ``kind=<name>``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.bench.concurrency import (
    DEFAULT_CLIENTS,
    OperatingPoint,
    choose_point,
    client_factory,
    concurrency_sweep,
    point_recall,
)
from workbench.bench.data import load_bench_data
from workbench.bench.db_plots import plot_concurrency, plot_db_filtered, plot_tiered, plot_updates
from workbench.bench.filtered import DEFAULT_SELECTIVITIES, build_indexes, curve_label, filtered_sweep
from workbench.bench.harness import BenchSet
from workbench.bench.pg_filtered import build_db_curves, db_filtered_sweep, under_return
from workbench.bench.pg_tiered import tiered_experiment
from workbench.bench.pg_updates import updates_experiment
from workbench.bench.results import write_results
from workbench.errors import QueryError
from workbench.index.metadata import Metadata, selectivity_predicate
from workbench.index.spec import IndexSpec, parse_spec
from workbench.io import atomic_write_json
from workbench.tracking.experiments import INDEX_BENCHMARKS
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

DEFAULT_INPROCESS = ("hnswlib:M=16,ef_construction=200?ef=40", "faiss:HNSW32,Flat?efSearch=40")
#: per experiment: (columns naming a child run, its params, its metrics)
RUN_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "db-filtered": (("curve", "selectivity"),
                    ("dataset", "index", "family", "strategy", "query_params", "selectivity", "predicate", "k",
                     "n_queries", "n_base", "in_database", "plan"),
                    ("recall", "recall_ids", "frac_short", "mean_results", "n_disallowed", "p50_ms", "p95_ms", "qps",
                     "n_allowed")),
    "concurrency": (("point", "clients"), ("dataset", "point", "family", "clients", "k", "reached"),
                    ("qps", "p50_ms", "p99_ms", "mean_ms", "queries", "wall_s", "recall", "load_1m")),
    "tiered": (("layout", "scope", "iterative_scan"),
               ("layout", "scope", "iterative_scan", "ef_search", "k", "n_partitions", "scanned", "pruned"),
               ("recall", "frac_short", "mean_results", "p50_ms", "p95_ms", "qps", "n_in_scope", "n_scanned")),
    "updates": (("index", "query_params", "stage"), ("index", "family", "query_params", "stage", "k"),
                ("recall", "frac_short", "mean_results", "p50_ms", "p95_ms", "qps", "stage_s", "index_bytes",
                 "table_bytes", "n_live")),
}


@dataclass
class DbResult:
    """One database experiment: its rows, figures and summary (``<name>.json``)."""

    frame: pd.DataFrame
    figures: dict[str, Path]
    summary: dict[str, Any]


def point_run(kind: str, row: Mapping[str, Any]) -> ChildRun:
    """A row of experiment ``kind`` as a child run tagged ``kind``."""
    name_keys, param_keys, metric_keys = RUN_FIELDS[kind]
    return ChildRun(f"{kind} " + " ".join(str(row[k]) for k in name_keys),
                    params={k: row[k] for k in param_keys if row.get(k) is not None},
                    metrics={k: float(row[k]) for k in metric_keys if row.get(k) is not None},
                    tags={"kind": kind, **({"family": row["family"]} if "family" in row else {})})


def tracking_sink(store: Store, kind: str, command: str | None = None) -> TrackingSink:
    """The sink that logs experiment ``kind`` (a key of :data:`RUN_FIELDS`) to ``store``."""
    return TrackingSink(store, INDEX_BENCHMARKS, command or f"workbench {kind}", lambda row: point_run(kind, row))


def _load(data: str | BenchSet, progress: bool) -> BenchSet:
    return load_bench_data(data, progress=progress) if isinstance(data, str) else data


def _queries(data: BenchSet, n_queries: int | None) -> Any:
    if n_queries is not None and (isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1):
        raise QueryError(f"n_queries must be a positive integer, got {n_queries!r}")
    return data.queries[:n_queries]


def ivf_lists(n: int) -> int:
    """IVF lists for ``n`` rows: about sqrt(n) (pgvector's README suggests rows / 1000 up to 1M rows; more
    lists keep a list scan short on the small sets here)."""
    return max(4, round(math.sqrt(n)))


def default_db_specs(n: int, dim: int) -> list[str]:
    """pgvector HNSW (ef_search 40, its default), IVFFlat, exact and LanceDB IVF_PQ with a refine step."""
    lists = ivf_lists(n)
    sub = next(s for s in (dim // 8, dim // 4, dim // 2, 1) if s >= 1 and dim % s == 0)
    parts = max(1, min(n // 256, lists))
    return ["pgvector:hnsw,m=16,ef_construction=64?ef_search=40", f"pgvector:ivfflat,lists={lists}?probes={max(1, lists // 20)}",
            "pgvector:exact", f"lancedb:IVF_PQ,num_partitions={parts},num_sub_vectors={sub}?nprobes=20&refine_factor=5"]


def _write(frame: pd.DataFrame, out: Path, name: str, figures: dict[str, Path], summary: dict[str, Any],
           sink: Sink) -> DbResult:
    write_results(frame, out / f"{name}.parquet")
    summary = {**summary, "load_avg_end": list(os.getloadavg()), "cpus": os.cpu_count(),
               "files": [str(out / f"{name}.parquet"), *map(str, figures.values())]}
    atomic_write_json(out / f"{name}.json", summary)
    sink.attach(name, [out / f"{name}.parquet", out / f"{name}.json", *figures.values()],
                metrics={"n_rows": len(frame)})
    return DbResult(frame, figures, summary)


def run_pg_filtered(data: str | BenchSet, out_dir: str | Path, *, specs: Sequence[str | IndexSpec] = (),
                    inprocess: Sequence[str | IndexSpec] = DEFAULT_INPROCESS, n_queries: int | None = 200, k: int = 10,
                    selectivities: Sequence[float] = DEFAULT_SELECTIVITIES, runs: int = 3, seed: int = 0,
                    sink: Sink | None = None, progress: bool = True) -> DbResult:
    """In-database filtered search (``bench.pg_filtered``) on pgvector/LanceDB ``specs`` (default
    ``default_db_specs``) beside the in-process pre-filter of ``inprocess`` specs and the exact subset
    (``bench.filtered``), one frame and one figure; ``db_filtered.*`` in ``out_dir``."""
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    local = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in inprocess]
    for s in selectivities:
        selectivity_predicate(s)
    data = _load(data, progress)
    queries = _queries(data, n_queries)
    n, dim = data.base.shape
    parsed = parsed or [parse_spec(s) for s in default_db_specs(n, dim)]
    sink, out = sink or NullSink(), Path(out_dir)
    params = {"k": k, "specs": " ".join(s.text for s in parsed), "inprocess": " ".join(s.text for s in local),
              "selectivities": ",".join(map(str, selectivities)), "runs": runs, "n_queries": len(queries), "seed": seed}
    load_start = list(os.getloadavg())
    with sink.sweep(f"db-filtered {data.name}", params, data.dataset_info), \
            contextlib.closing(Metadata.synthetic(n, seed=seed, table=data.name)) as meta:
        curves = build_db_curves(data.base, data.metric, parsed, meta, progress)
        try:
            frame = db_filtered_sweep(data.base, queries, data.metric, meta, curves, k=k, selectivities=selectivities,
                                      runs=runs, dataset=data.name, on_point=sink.point, progress=progress)
            builds = {c.label.split("?")[0]: {k_: v for k_, v in c.index.build_stats.items() if k_ != "notices"}
                      for c in curves}
        finally:
            for index in {id(c.index): c.index for c in curves}.values():
                index.close()
        if local:
            def tagged(row: dict[str, Any]) -> dict[str, Any]:
                return {**row, "curve": curve_label(row), "in_database": False, "plan": ""}

            indexes = build_indexes(data.base, data.metric, local, progress=progress)
            own = filtered_sweep(data.base, queries, data.metric, meta, indexes, k=k, selectivities=selectivities,
                                 strategies=("prefilter", "exact_subset"), runs=runs, dataset=data.name,
                                 on_point=lambda r: sink.point(tagged(r)), progress=progress)
            frame = pd.concat([frame, pd.DataFrame([tagged(r) for r in own.to_dict("records")])], ignore_index=True)
        figures = {"db_filtered": plot_db_filtered(frame, out / "db_filtered.png")}
        summary = {"dataset": data.dataset_info, "n_base": n, "n_queries": len(queries), "k": k,
                   "specs": [s.text for s in parsed], "inprocess": [s.text for s in local], "builds": builds,
                   "under_return_at_1pct": under_return(frame, 0.01),
                   "recall": {c: dict(zip(g["selectivity"].astype(str), g["recall"].round(4)))
                              for c, g in frame.groupby("curve", sort=False)},
                   "plans": {c: dict(zip(g["selectivity"].astype(str), g["plan"]))
                             for c, g in frame[frame["in_database"]].groupby("curve", sort=False)},
                   "load_avg_start": load_start}
        return _write(frame, out, "db_filtered", figures, summary, sink)


def run_concurrency(data: str | BenchSet, out_dir: str | Path, *, specs: Sequence[str | IndexSpec],
                    clients: Sequence[int] = DEFAULT_CLIENTS, target_recall: float | None = 0.95,
                    per_client: int = 1000, time_limit_s: float = 30.0, k: int = 10, n_queries: int | None = None,
                    sink: Sink | None = None, progress: bool = True) -> DbResult:
    """QPS and p50/p99 with each number of ``clients`` (``bench.concurrency``) for each spec, at the first
    point of its sweep reaching ``target_recall`` (None: its first point as given); ``concurrency.*``."""
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    if not parsed:
        raise QueryError("concurrency needs at least one index spec (--index SPEC)")
    if not clients or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in clients):
        raise QueryError(f"client counts must be positive integers, got {list(clients)}")
    data = _load(data, progress)
    bench = data if n_queries is None else BenchSet(data.name, data.metric, data.base, _queries(data, n_queries),
                                                    data.gt_distances[:n_queries], data.gt_ids[:n_queries],
                                                    data.digest, data.source)
    sink, out = sink or NullSink(), Path(out_dir)
    params = {"k": k, "specs": " ".join(s.text for s in parsed), "clients": ",".join(map(str, clients)),
              "target_recall": target_recall, "per_client": per_client, "time_limit_s": time_limit_s,
              "n_queries": len(bench.queries)}
    rows, points = [], []
    with sink.sweep(f"concurrency {data.name}", params, data.dataset_info):
        for spec in parsed:
            index = spec.make(data.metric)
            index.build(data.base)
            try:
                if target_recall is None:
                    qp = spec.points()[0]
                    point = OperatingPoint(spec, qp, point_recall(index, bench, k, qp), True)
                else:
                    point = choose_point(index, spec, bench, k, target_recall)
                points.append(point)
                open_client = client_factory(index, bench.queries, k, point.query_params)
                for r in concurrency_sweep(open_client, len(bench.queries), clients, per_client, time_limit_s):
                    row = {"dataset": data.name, "point": point.label, "family": index.family, "k": k,
                           "recall": point.recall, "reached": point.reached, **r, "load_1m": os.getloadavg()[0]}
                    rows.append(row)
                    sink.point(row)
            finally:
                close = getattr(index, "close", None)
                if close is not None:
                    close()
        frame = pd.DataFrame(rows)
        figures = {"concurrency": plot_concurrency(frame, out / "concurrency.png")}
        table = frame.pivot_table(index="point", columns="clients", values="qps", sort=False)
        summary = {"dataset": data.dataset_info, "n_base": len(data.base), "n_queries": len(bench.queries), "k": k,
                   "target_recall": target_recall,
                   "points": [{"point": p.label, "recall": p.recall, "reached": p.reached} for p in points],
                   "qps": {p: {str(c): round(float(v), 1) for c, v in r.items()} for p, r in table.iterrows()},
                   "p99_ms": {p: {str(c): round(float(v), 3) for c, v in r.items()} for p, r in
                              frame.pivot_table(index="point", columns="clients", values="p99_ms", sort=False).iterrows()},
                   "speedup_at_max_clients": {p: float(r.iloc[-1] / r.iloc[0]) for p, r in table.iterrows()}}
        return _write(frame, out, "concurrency", figures, summary, sink)


def run_tiered(data: str | BenchSet, out_dir: str | Path, *, n_queries: int | None = 200, k: int = 10,
               n_quarters: int = 4, archive_quarters: int = 8, recent_quarters: int = 1, m: int = 16,
               ef_construction: int = 64, ef_search: int = 40, runs: int = 3, seed: int = 0,
               sink: Sink | None = None, progress: bool = True) -> DbResult:
    """Quarterly partitions + archive, each with its own HNSW, against one big index
    (``bench.pg_tiered``); ``tiered.*`` in ``out_dir``."""
    data = _load(data, progress)
    queries = _queries(data, n_queries)
    sink, out = sink or NullSink(), Path(out_dir)
    params = {"k": k, "n_quarters": n_quarters, "archive_quarters": archive_quarters,
              "recent_quarters": recent_quarters, "m": m, "ef_construction": ef_construction, "ef_search": ef_search,
              "runs": runs, "seed": seed, "n_queries": len(queries)}
    load_start = list(os.getloadavg())
    with sink.sweep(f"tiered {data.name}", params, data.dataset_info):
        frame, layout = tiered_experiment(data.base, queries, data.metric, k=k, n_quarters=n_quarters,
                                          archive_quarters=archive_quarters, recent_quarters=recent_quarters, m=m,
                                          ef_construction=ef_construction, ef_search=ef_search, seed=seed, runs=runs,
                                          on_point=sink.point)
        figures = {"tiered": plot_tiered(frame, out / "tiered.png")}
        summary = {"dataset": data.dataset_info, "n_base": len(data.base), "n_queries": len(queries), "k": k,
                   "layout": layout, "cases": frame.to_dict("records"), "load_avg_start": load_start}
        return _write(frame, out, "tiered", figures, summary, sink)


def default_update_specs(n: int) -> list[str]:
    lists = ivf_lists(n)
    return ["pgvector:hnsw,m=16,ef_construction=64?ef_search=40",
            f"pgvector:ivfflat,lists={lists}?probes={max(1, lists // 20)}"]


def run_updates(data: str | BenchSet, out_dir: str | Path, *, specs: Sequence[str | IndexSpec] = (),
                fraction: float = 0.1, n_queries: int | None = 200, k: int = 10, runs: int = 3, seed: int = 0,
                sink: Sink | None = None, progress: bool = True) -> DbResult:
    """Delete ``fraction`` of the rows and insert as many, then recall/latency before and after VACUUM and
    after REINDEX (``bench.pg_updates``) for each pgvector spec (default HNSW and IVFFlat); ``updates.*``."""
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    data = _load(data, progress)
    queries = _queries(data, n_queries)
    parsed = parsed or [parse_spec(s) for s in default_update_specs(len(data.base))]
    sink, out = sink or NullSink(), Path(out_dir)
    params = {"k": k, "specs": " ".join(s.text for s in parsed), "fraction": fraction, "runs": runs, "seed": seed,
              "n_queries": len(queries)}
    load_start = list(os.getloadavg())
    with sink.sweep(f"updates {data.name}", params, data.dataset_info):
        frame = updates_experiment(data.base, queries, data.metric, parsed, k=k, fraction=fraction, seed=seed,
                                   runs=runs, on_point=sink.point)
        figures = {"updates": plot_updates(frame, out / "updates.png")}
        table = frame.pivot_table(index=["index", "query_params"], columns="stage", values="recall", sort=False)
        summary = {"dataset": data.dataset_info, "n_queries": len(queries), "k": k, "fraction": fraction,
                   "recall": {" ".join(filter(None, key)): {s: round(float(v), 4) for s, v in r.items()}
                              for key, r in table.iterrows()},
                   "rows": frame.to_dict("records"), "load_avg_start": load_start}
        return _write(frame, out, "updates", figures, summary, sink)
