"""The rerun benchmark (``workbench ann-spread``, issue 13): the same sweep N times, each rerun a fresh
results file in ``DIR/rerun-i``; per point the spread of the medians, per recall target whether the pairs
of families the best-QPS table marks as different keep their order in every rerun. Writes
``DIR/spread.json`` and ``DIR/spread.png``. An interrupted run resumes: each rerun's file skips what it holds.

Each rerun runs in a fresh process, as a user's separate ``workbench ann`` runs do: a process lays its indexes
out in memory its own way, and reruns sharing one process were not independent (on the sentence set, in one
of two such runs, faiss IVF256,SQ8 ran 26% slower in the first rerun of the process than in the two after it).
Nothing is logged to the tracking store (each rerun is a sweep of its own; ``workbench ann`` tracks one).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workbench.bench.data import load_bench_data
from workbench.bench.harness import DEFAULT_RUNS, RESULTS_FILE, BenchSet, run_sweep
from workbench.bench.pareto import RERUN_NOISE
from workbench.bench.results import read_results, sweep_time
from workbench.bench.spread import plot_spread, point_spread, ranking_consistency, spread_tables
from workbench.errors import IndexSpecError
from workbench.index.spec import IndexSpec, parse_spec
from workbench.io import atomic_write_json
from workbench.runners.ann import PRESETS, resolve_specs


@dataclass
class SpreadResult:
    """The reruns' frames, the per-point spread, the ranking check and where they were written."""

    data: BenchSet
    frames: list[pd.DataFrame]
    spread: pd.DataFrame
    summary: dict[str, Any]
    figure: Path


GRID_TIME_FILE = "grid_seconds.json"   # in each rerun folder: bench.results.sweep_time


def run_spread(data: str | BenchSet, out_dir: str | Path, *, reruns: int = 3, specs: Sequence[str | IndexSpec] = (),
               preset: str | None = None, k: int = 10, threads: int = 1, runs: int = DEFAULT_RUNS,
               budget_s: float = 10.0, batch_threads: int | None = None, progress: bool = True) -> SpreadResult:
    """Run the sweep of ``specs``/``preset`` (as ``run_ann``) ``reruns`` times and compare the reruns."""
    if reruns < 2:
        raise IndexSpecError(f"--reruns {reruns}: at least 2 reruns are needed to see a spread")
    if preset is not None and preset not in PRESETS:
        raise IndexSpecError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    parsed = [s if isinstance(s, IndexSpec) else parse_spec(s) for s in specs]
    if isinstance(data, str):
        data = load_bench_data(data, progress=progress)
    sweep = resolve_specs(data, parsed, preset)
    out = Path(out_dir)
    batch_threads = batch_threads or os.cpu_count() or 1
    frames, seconds = [], []
    for i in range(reruns):
        folder, t0 = out / f"rerun-{i}", time.perf_counter()
        before = len(read_results(folder / RESULTS_FILE))
        # one process per rerun ("spawn": nothing inherited from this one's heap), started and stopped here
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            df = pool.submit(run_sweep, data, sweep, k=k, threads=threads, out_dir=folder, runs=runs,
                             batch_threads=batch_threads, progress=progress, budget_s=budget_s).result()
        spent = time.perf_counter() - t0
        seconds.append(sweep_time(folder / GRID_TIME_FILE, spent, measured=len(df) > before)["wall_s"])
        frames.append(df[df["dataset_digest"] == data.digest])
    spread = point_spread(frames)
    tables = spread_tables(frames)
    consistency = ranking_consistency(tables)
    figure = plot_spread(spread, out / "spread.png",
                         f"QPS spread over {reruns} reruns — {data.name} ({len(data.base):,} x {data.base.shape[1]}), "
                         f"recall@{k}, one query at a time on {threads} thread(s), {runs} passes a point")
    summary = {
        "dataset": {**data.dataset_info, "n_base": len(data.base), "n_queries": len(data.queries),
                    "dim": int(data.base.shape[1])},
        "k": k, "threads": threads, "runs": runs, "reruns": reruns, "specs": [s.text for s in sweep],
        "rerun_seconds": seconds,
        "rel_spread": {"median": float(spread["rel_spread"].median()), "max": float(spread["rel_spread"].max())},
        # the margin the tables widen intervals by, beside what these reruns say it should be
        "rerun_noise": {"used": RERUN_NOISE, "measured": float(spread["rel_spread"].median()) / 2},
        "points": spread.to_dict("records"), "best_qps_at_recall": tables, "ranking": consistency,
        "reruns_dirs": [str(out / f"rerun-{i}") for i in range(reruns)], "plot": str(figure),
    }
    atomic_write_json(out / "spread.json", summary)
    return SpreadResult(data, frames, spread, summary, figure)
