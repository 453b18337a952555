"""The tuner runner (``workbench tune``): a resumable Optuna study (``workbench.bench.tune``) over the
families of ``workbench.bench.tune_space``, logged as one sweep, with its recommendation, trials, frontier
and, with ``compare=True``, the side-by-side comparison against every library's default and the timed
exhaustive default grid (``workbench ann --preset default``).

Files in ``out_dir``: ``optuna.journal`` (the study: a rerun with the same question continues it),
``results.parquet`` (every measured point, the harness's results format), ``trials.csv``, ``frontier.csv``,
``frontier.png``, ``tune.json``; with the comparison ``compare.json``, ``compare.png``, ``compare.parquet``
(every round's row) and ``grid/`` (the default sweep's results, resumable).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from workbench.bench.data import load_bench_data
from workbench.bench.harness import RESULTS_FILE, BenchSet, run_sweep
from workbench.bench.pareto import best_at_recall, frontier
from workbench.bench.plots import plot_recall_qps
from workbench.bench.reference import default_specs
from workbench.bench.results import KEY, read_results, sweep_time, write_results
from workbench.bench.tune import TuneSettings, best_trial, open_study, run_study, trial_table
from workbench.bench.tune_compare import compare
from workbench.bench.tune_space import FAMILIES, default_candidates, suggest
from workbench.io import atomic_write_json, atomic_write_text
from workbench.plotting import pyplot, save_png
from workbench.runners.ann import point_run
from workbench.tracking.experiments import INDEX_BENCHMARKS
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

JOURNAL = "optuna.journal"


@dataclass
class TuneResult:
    """A tuning run: the recommendation (None when no build reached the target), the trials, every
    measured point, the frontier, the figures, the summary (``tune.json``) and the comparison if asked."""

    data: BenchSet
    recommended: dict[str, Any] | None
    trials: pd.DataFrame
    frame: pd.DataFrame
    frontier: pd.DataFrame
    figures: dict[str, Path]
    summary: dict[str, Any]
    comparison: dict[str, Any] | None = None


def tune_run(row: Mapping[str, Any]) -> ChildRun:
    """A measured point as a child run, as ``workbench ann`` logs it, tagged with its trial (or round)."""
    run = point_run(row)
    tags = {**run.tags, **{k: str(row[k]) for k in ("trial", "round") if k in row}}
    return ChildRun(run.name, run.params, run.metrics, tags)


def tracking_sink(store: Store) -> TrackingSink:
    """The sink that logs a tuning sweep to ``store``'s ``index-benchmarks`` experiment."""
    return TrackingSink(store, INDEX_BENCHMARKS, "workbench tune", tune_run)


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them (every figure measured is labelled)."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


class _ResultsFile:
    """``results.parquet`` grown by one row at a time (rewritten atomically, checksummed, as the harness)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = read_results(path).to_dict("records")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_results(pd.DataFrame(self.rows).drop_duplicates(list(KEY), keep="last"), self.path)


def run_tune(data: str | BenchSet, out_dir: str | Path, settings: TuneSettings | None = None, *,
             sink: Sink | None = None, progress: bool = True, with_compare: bool = False, rounds: int = 7,
             grid: bool = True) -> TuneResult:
    """Tune on ``data`` (a DATA string or a loaded set) into ``out_dir``; see the module docstring.

    The settings are checked before any data is loaded, so a bad family or budget fails in a second."""
    settings = (settings or TuneSettings()).checked()
    if isinstance(data, str):
        data = load_bench_data(data, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sink = sink or NullSink()
    results = _ResultsFile(out / RESULTS_FILE)
    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    study = open_study(storage, data, settings)
    params = {"recall": settings.recall, "memory_mb": settings.memory_mb, "build_s": settings.build_s,
              "budget_s": settings.budget_s, "families": ",".join(settings.families), "k": settings.k,
              "threads": settings.threads, "build_threads": settings.build_threads, "study": study.study_name}

    def on_point(row: dict[str, Any]) -> None:
        results.add(row)
        sink.point(row)

    with sink.sweep(f"tune {data.name} recall>={settings.recall}", params, data.dataset_info):
        wall = run_study(study, data, settings, on_point, progress)
        result = _report(data, settings, study, pd.DataFrame(results.rows), out, wall)
        if with_compare:
            result.comparison = run_comparison(data, settings, result, out, rounds, grid, progress)
            result.figures["compare"] = out / "compare.png"
        artifacts = [out / RESULTS_FILE, out / "tune.json", out / "trials.csv", out / "frontier.csv",
                     *result.figures.values()] + ([out / "compare.json"] if with_compare else [])
        rec = result.recommended or {}
        metrics = {"n_trials": len(result.trials), "tune_wall_s": wall,
                   **({"recommended_qps": rec["qps"], "recommended_recall": rec["recall"]} if rec else {})}
        if result.comparison:
            metrics.update({f"ratio_vs_{k}": v for k, v in result.comparison["ratios"].items() if v is not None})
        sink.attach("tune", artifacts, metrics=metrics)
    return result


def _report(data: BenchSet, settings: TuneSettings, study: optuna.Study, df: pd.DataFrame, out: Path,
            wall: float) -> TuneResult:
    """The recommendation, trial table, frontier (table and figure) and ``tune.json``."""
    trials = trial_table(study)
    atomic_write_text(out / "trials.csv", trials.to_csv(index=False))
    if not df.empty:
        df = df[(df["dataset_digest"] == data.digest) & (df["k"] == settings.k) & (df["threads"] == settings.threads)]
    best = best_trial(study, settings)
    recommended = None
    if best is not None:
        recommended = {"spec": best.user_attrs["point"], "build": best.user_attrs["spec"], "trial": best.number,
                       "qps": best.value, "recall": best.user_attrs["recall"], "build_s": best.user_attrs["build_s"],
                       "size_mb": best.user_attrs["size_mb"], "params": best.params,
                       **{k: best.user_attrs[k] for k in ("qps_lo", "qps_hi") if k in best.user_attrs}}
    front = frontier(df.assign(all="all"), by="all").drop(columns="all") if not df.empty else df
    cols = [c for c in ("point", "family", "recall", "qps", "build_s", "size_bytes", "trial") if c in front]
    atomic_write_text(out / "frontier.csv", front[cols].to_csv(index=False) if not front.empty else "")
    figures: dict[str, Path] = {}
    if not df.empty:
        highlight = None
        if recommended is not None:
            match = df[df["point"] == recommended["spec"]]
            highlight = match.iloc[-1] if len(match) else None
        figures["frontier"] = plot_recall_qps(
            df, out / "frontier.png", highlight=highlight,
            title=f"Tuner's measured points, recall@{settings.k} >= {settings.recall} sought — {data.name}, "
                  f"QPS one query at a time on {settings.threads} thread(s); load {load_average()}")
    states = trials["state"].value_counts().to_dict() if not trials.empty else {}
    durations = trials["duration_s"].dropna() if not trials.empty else pd.Series(dtype=float)
    summary = {"dataset": {**data.dataset_info, "n_base": len(data.base), "dim": int(data.base.shape[1]),
                           "n_queries": len(data.queries), "metric": data.metric},
               "study": study.study_name, "target": settings.recall, "k": settings.k, "threads": settings.threads,
               "limits": {"memory_mb": settings.memory_mb, "build_s": settings.build_s},
               "families": list(settings.families), "budget_s": settings.budget_s, "wall_s": wall,
               "study_trials_s": float(durations.sum()), "trials": len(trials), "states": states,
               "pruned": int(states.get("PRUNED", 0)), "n_points": len(df), "recommended": recommended,
               "frontier": front[cols].to_dict("records") if not front.empty else [], "load": load_average()}
    atomic_write_json(out / "tune.json", summary)
    return TuneResult(data, recommended, trials, df, front, figures, summary)


def run_comparison(data: BenchSet, settings: TuneSettings, result: TuneResult, out: Path, rounds: int,
                   grid: bool, progress: bool) -> dict[str, Any]:
    """Every library's default and the recommendation side by side (``compare.json``, ``compare.png``),
    and, with ``grid``, the exhaustive default grid timed (``grid/``)."""
    n, dim = data.base.shape
    candidates = dict(default_candidates(n, dim))
    if result.recommended is not None:
        candidates["tuned"] = suggest(optuna.trial.FixedTrial(result.recommended["params"]), tuple(FAMILIES), n, dim)
    rows: list[dict[str, Any]] = []
    load_before = load_average()
    t0 = time.perf_counter()
    summaries = compare(data, candidates, settings, rounds=rounds, on_point=rows.append, progress=progress)
    compare_s = time.perf_counter() - t0
    write_results(rows, out / "compare.parquet")
    by_name = {s["name"]: s for s in summaries}
    tuned = by_name.get("tuned")
    ratios = {name: (tuned["qps"] / s["qps"] if tuned and tuned["qps"] and s["qps"] else None)
              for name, s in by_name.items() if name != "tuned"}
    reached = [s for name, s in by_name.items() if name != "tuned" and s["reached"]]
    best_default = max(reached, key=lambda s: s["qps"]) if reached else None
    payload = {"target": settings.recall, "k": settings.k, "threads": settings.threads, "rounds": rounds,
               "load_before": load_before, "load_after": load_average(), "compare_s": compare_s,
               "configs": summaries, "ratios": ratios,
               "best_default": best_default["name"] if best_default else None,
               "ratio_vs_best_default": (tuned["qps"] / best_default["qps"]
                                         if tuned and tuned["qps"] and best_default else None),
               "tuner": {"wall_s": result.summary["wall_s"], "study_trials_s": result.summary["study_trials_s"],
                         "trials": result.summary["trials"],
                         "qps": result.recommended["qps"] if result.recommended else None,
                         "point": result.recommended["spec"] if result.recommended else None}}
    atomic_write_json(out / "compare.json", payload)      # on disk before the grid's long sweep starts
    plot_compare(payload, out / "compare.png", data.name)
    if grid:
        payload["grid"] = run_grid(data, settings, out / "grid", progress)
        atomic_write_json(out / "compare.json", payload)
    return payload


def run_grid(data: BenchSet, settings: TuneSettings, folder: Path, progress: bool) -> dict[str, Any]:
    """The exhaustive default grid (``workbench ann --preset default``) timed, and its best QPS at the
    target. Resumable: points already in ``folder`` are kept and the time of the run that measured them
    (``grid_time.json``) is reported."""
    folder.mkdir(parents=True, exist_ok=True)
    before = len(read_results(folder / RESULTS_FILE))
    t0 = time.perf_counter()
    df = run_sweep(data, default_specs(*data.base.shape), k=settings.k, threads=settings.threads, out_dir=folder,
                   progress=progress)
    info = sweep_time(folder / "grid_time.json", time.perf_counter() - t0, measured=len(df) > before,
                      load=load_average())
    df = df[df["dataset_digest"] == data.digest]
    best = best_at_recall(df, [settings.recall], by="library").dropna(subset=["point"])
    top = best.loc[best["qps"].idxmax()] if not best.empty else None
    return {"wall_s": info["wall_s"], "load": info["load"], "n_points": len(df),
            "best_point": None if top is None else top["point"], "best_qps": None if top is None else float(top["qps"]),
            "best_recall": None if top is None else float(top["recall"]),
            "per_library": {r["library"]: {"point": r["point"], "qps": float(r["qps"]), "recall": float(r["recall"])}
                            for r in best.to_dict("records")}}


def plot_compare(payload: Mapping[str, Any], path: Path, name: str) -> Path:
    """Median QPS at the target of each configuration, the extreme rounds as an error bar."""
    configs = [c for c in payload["configs"] if c["reached"]]
    fig, ax = pyplot().subplots(figsize=(9, 0.6 * len(configs) + 1.8))
    labels = [f"{c['name']}: {c['point']}" for c in configs]
    qps = [c["qps"] for c in configs]
    err = [[c["qps"] - c["qps_lo"] for c in configs], [c["qps_hi"] - c["qps"] for c in configs]]
    colors = ["tab:red" if c["name"] == "tuned" else "tab:blue" for c in configs]
    ax.barh(range(len(configs)), qps, xerr=err, color=colors, alpha=0.8, capsize=4)
    ax.set_yticks(range(len(configs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"QPS at recall@{payload['k']} >= {payload['target']} (median of {payload['rounds']} interleaved "
                  f"rounds; bars: lowest to highest round)")
    ax.set_title(f"Tuned vs each library's default — {name}, one query at a time, {payload['threads']} thread(s)\n"
                 f"load before {payload['load_before']}, after {payload['load_after']}", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return save_png(fig, path)
