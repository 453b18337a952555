"""The filtered-search runner (``workbench filtered``, notebook 04): build the indexes, sweep selectivity
(``workbench.bench.filtered``), write ``filtered.parquet``, the two figures and ``summary.json``, and report
the sweep, each row and the outputs through a :class:`~workbench.tracking.sink.Sink`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from workbench.bench.data import load_bench_data
from workbench.bench.filtered import (
    DEFAULT_OVERFETCH,
    DEFAULT_SELECTIVITIES,
    build_indexes,
    collapse_points,
    curve_label,
    filtered_sweep,
    recall_table,
    recommend,
)
from workbench.bench.filtered_plots import plot_sweep
from workbench.bench.harness import BenchSet
from workbench.bench.reference import default_specs
from workbench.bench.results import write_results
from workbench.errors import QueryError
from workbench.index.metadata import Metadata, selectivity_predicate
from workbench.index.spec import IndexSpec, parse_spec
from workbench.io import atomic_write_json
from workbench.tracking.experiments import FILTERED_SEARCH
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

RESULTS_FILE = "filtered.parquet"
PARAM_KEYS = ("dataset", "metric", "index", "family", "strategy", "overfetch", "query_params", "selectivity",
              "predicate", "k", "threads", "n_queries", "n_base")
METRIC_KEYS = ("recall", "recall_ids", "frac_short", "mean_results", "n_disallowed", "p50_ms", "p95_ms", "qps",
               "n_allowed", "selectivity_actual", "select_ms")


@dataclass
class FilteredResult:
    """One filtered sweep: every measured row, the figures and the summary (``summary.json``)."""

    frame: pd.DataFrame
    figures: dict[str, Path]
    summary: dict[str, Any]


def point_run(row: Mapping[str, Any]) -> ChildRun:
    """A measured row as a child run, tagged ``kind=filtered-search`` (it shares the index experiment)."""
    return ChildRun(f"filtered {curve_label(row)} s={row['selectivity']}",
                    params={key: row[key] for key in PARAM_KEYS if row.get(key) is not None},
                    metrics={key: float(row[key]) for key in METRIC_KEYS},
                    tags={"kind": "filtered-search", "family": row["family"]})


def tracking_sink(store: Store, command: str = "workbench filtered") -> TrackingSink:
    """The sink that logs a filtered sweep to ``store`` (experiment ``FILTERED_SEARCH``)."""
    return TrackingSink(store, FILTERED_SEARCH, command, point_run)


def resolve_specs(specs: Sequence[str | IndexSpec], n: int, dim: int) -> list[IndexSpec]:
    """The indexes to compare: ``specs``, else the filtered default; ``exact`` is dropped, since the exact
    subset is always measured (it is the ground truth)."""
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    return [s for s in parsed if s.library != "exact"] if parsed else default_specs(n, dim, sweep="filtered")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_sweep(k: int, selectivities: Sequence[float], overfetch: Sequence[int], threads: int, runs: int,
                 n_queries: int | None) -> None:
    """Refuse bad sweep values before anything is loaded or built."""
    for name, value in (("k", k), ("threads", threads), ("runs", runs), ("n_queries", n_queries)):
        if not (_positive_int(value) or name == "n_queries" and value is None):
            raise QueryError(f"{name} must be a positive integer, got {value!r}")
    for s in selectivities:
        selectivity_predicate(s)
    if not overfetch or not all(_positive_int(f) for f in overfetch):
        raise QueryError(f"over-fetch factors must be positive integers, got {list(overfetch)}")


def run_filtered(data: str | BenchSet, out_dir: str | Path, *, n_queries: int | None = None,
                 specs: Sequence[str | IndexSpec] = (), k: int = 10,
                 selectivities: Sequence[float] = DEFAULT_SELECTIVITIES,
                 overfetch: Sequence[int] = DEFAULT_OVERFETCH, threads: int = 1, runs: int = 3, seed: int = 0,
                 sink: Sink | None = None, progress: bool = True) -> FilteredResult:
    """Sweep selectivity on ``data`` (a DATA string as for ``workbench ann``, or a loaded ``BenchSet``; its
    first ``n_queries`` queries) for each index of ``specs`` and write the outputs into ``out_dir``.

    Attributes are ``Metadata.synthetic(n, seed)``. ``sink`` (default: none) receives the sweep as a parent,
    each row as a child and the outputs (``tracking_sink(store)`` logs them to a tracking store).
    """
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]   # typos before loading
    _check_sweep(k, selectivities, overfetch, threads, runs, n_queries)
    if isinstance(data, str):
        data = load_bench_data(data, progress=progress)
    queries = data.queries[:n_queries]
    n, dim = data.base.shape
    sweep = resolve_specs(parsed, n, dim)
    out = Path(out_dir)
    sink = sink or NullSink()
    params = {"k": k, "specs": " ".join(s.text for s in sweep), "selectivities": ",".join(map(str, selectivities)),
              "overfetch": ",".join(map(str, overfetch)), "threads": threads, "runs": runs,
              "n_queries": len(queries), "seed": seed}
    indexes = build_indexes(data.base, data.metric, sweep, threads=threads, progress=progress)
    with contextlib.closing(Metadata.synthetic(n, seed=seed, table=data.name)) as metadata, \
            sink.sweep(f"filtered {data.name}", params, data.dataset_info):
        frame = filtered_sweep(data.base, queries, data.metric, metadata, indexes, k=k, selectivities=selectivities,
                               overfetch=overfetch, threads=threads, runs=runs, dataset=data.name,
                               on_point=sink.point, progress=progress)
        write_results(frame, out / RESULTS_FILE)
        figures = plot_sweep(frame, out)
        summary = summarise(frame, data, sweep, out, figures)
        atomic_write_json(out / "summary.json", summary)
        sink.attach("report", [out / RESULTS_FILE, out / "summary.json", *figures.values()],
                    metrics={"n_points": len(frame), "n_disallowed": int(frame["n_disallowed"].max())})
    return FilteredResult(frame, figures, summary)


def summarise(frame: pd.DataFrame, data: BenchSet, specs: Sequence[IndexSpec], out: Path,
              figures: Mapping[str, Path], min_recall: float = 0.9) -> dict[str, Any]:
    """What ``summary.json`` holds: recall per curve and selectivity, where each curve collapses below
    ``min_recall``, and the fastest curve at or above it per selectivity."""
    first = frame.iloc[0]
    table = recall_table(frame)
    return {
        "dataset": data.dataset_info, "metric": data.metric, "k": int(first["k"]), "threads": int(first["threads"]),
        "n_base": int(first["n_base"]), "n_queries": int(first["n_queries"]), "specs": [s.text for s in specs],
        "rows": len(frame),
        "recall": {curve: {c: table.loc[curve, c] for c in table.columns} for curve in table.index},
        f"collapse_below_recall_{min_recall}": collapse_points(frame, min_recall),
        f"fastest_at_recall_{min_recall}": recommend(frame, min_recall).to_dict("records"),
        "files": [str(out / RESULTS_FILE), *map(str, figures.values())],
    }
