"""The ANN benchmark harness: build each configuration once, sweep its query parameters, measure.

Measurement follows ann-benchmarks (Aumüller et al., 2020): queries one at a time on ``threads``
threads after a warm-up, QPS = queries / wall time of a pass. Batch QPS (all queries in one call on all
cores, faiss-style) is reported beside it, labelled, since the two differ by 10x or more.

Timing noise (issue 13): a *group* of build configurations is built first, then the timed passes of all
its points are interleaved, round ``r`` running one pass of every point in a rotated order, so that
machine drift hits every point alike (as ``ann-overhead`` alternates harness and bare loop). Each point
reports the median over its passes with the order-statistic confidence interval of the median
(``workbench.index.metrics.median_interval``), the best pass beside it, and latency percentiles over all
passes pooled. :func:`measure_group` is the unit of work an :class:`Executor` (e.g. Ray) runs on a node;
the driver alone writes the results file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import psutil
from tqdm.auto import tqdm

from workbench.bench.results import (
    measured_keys,
    point_key,
    read_results,
    write_results,
)
from workbench.bench.timing import collect, time_pass
from workbench.errors import QueryError, SweepIncomplete
from workbench.index.base import VectorIndex
from workbench.index.groundtruth import GT_K, ground_truth, vectors_digest
from workbench.index.memory import bytes_per_vector_formula
from workbench.index.metrics import PointData, compute_metrics
from workbench.index.spec import IndexSpec
from workbench.io import atomic_write_json
from workbench.vectors.kernel import pair_distances, prepare

RESULTS_FILE = "results.parquet"
FAILURES_FILE = "failures.json"  # the configurations an executor could not measure (removed once none fail)
SERVER_SAMPLE = 100  # queries whose server-side execution time a database point reports
DEFAULT_RUNS = 5     # passes per point: the range of 5 passes covers the median with probability 0.9375
REWARM = 50          # queries re-run before each later pass: the other points' passes evicted this index's caches
MEMORY_SHARE = 0.5   # a local group's estimated index bytes may use this share of the available memory


@dataclass
class BenchSet:
    """A data set as the harness sees it: prepared vectors, exact neighbours and a digest."""

    name: str
    metric: str
    base: np.ndarray
    queries: np.ndarray
    gt_distances: np.ndarray
    gt_ids: np.ndarray
    digest: str
    source: str = ""

    @classmethod
    def from_vectors(cls, name: str, base: np.ndarray, queries: np.ndarray, metric: str,
                     neighbors: np.ndarray | None = None, source: str = "", gt_cache: bool | str | Path = True,
                     progress: bool = True) -> "BenchSet":
        """Prepare vectors (checked; normalised for cosine) and take the exact top-100, from ``neighbors``
        when given (distances recomputed) else computed and cached."""
        b = prepare(base, metric, f"{name}: base")
        if len(queries) == 0:
            raise QueryError(f"{name}: the query set is empty (0 queries)")
        q = prepare(queries, metric, f"{name}: queries", b.shape[1])
        if neighbors is not None:
            ids = np.asarray(neighbors, dtype=np.int64)
            dist = pair_distances(b, q, ids, metric).astype(np.float32)
        else:
            dist, ids = ground_truth(b, q, metric, k=min(GT_K, len(b)), cache=gt_cache, progress=progress)
        return cls(name, metric, b, q, dist, ids, vectors_digest(b, q, metric), source)

    @classmethod
    def from_vector_set(cls, vs: Any, source: str = "", **kw: Any) -> "BenchSet":
        """From a ``workbench.vectors.formats.VectorSet``."""
        return cls.from_vectors(vs.name, vs.base, vs.queries, vs.metric, vs.neighbors, source, **kw)

    @property
    def dataset_info(self) -> dict[str, str]:
        return {"name": self.name, "digest": self.digest, "source": self.source or self.name}


@dataclass(frozen=True)
class SweepSettings:
    """How every point of a sweep is measured (the same on every node)."""

    k: int = 10
    threads: int = 1            # threads of the one-query-at-a-time passes
    runs: int = DEFAULT_RUNS    # timed passes per point (fewer once ``budget_s`` is spent)
    warmup: int = 200           # queries re-run before each later pass (at most REWARM; the first pass
                                # follows the untimed pass over every query that takes the ids)
    batch_threads: int = 1      # threads of the build and of the batch calls
    budget_s: float = 10.0      # a point's timed passes stop once this much is spent (at least one pass)


Group = list[tuple[IndexSpec, list[dict[str, Any]]]]   # build configurations and the query points to measure
GroupItem = tuple[Group, SweepSettings]                 # what an executor's task receives besides the data


@dataclass(frozen=True)
class TaskFailure:
    """What an executor yields for a task that finally failed (after its retries): the item and why. The
    harness tests the shape (``item`` and ``error`` attributes, not a list of rows), so an executor in a
    lower layer (``services``) may yield its own class of these two fields without importing this one."""

    item: Any
    error: str


class Executor(Protocol):
    """Runs ``fn(shared, item)`` for every item, possibly on other nodes (``workbench.services.ray``)."""

    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any,
            num_cpus: float = 1) -> Iterator[tuple[Any, Any, str]]:
        """``(item, fn(shared, item) or a TaskFailure, node id)`` per item, as completed; ``num_cpus`` a task."""

    def close(self) -> None: ...


@dataclass
class _Timing:
    """One point being measured: its index (shared with the other points of its build) and its passes."""

    index: VectorIndex
    query_params: dict[str, Any]
    queries: np.ndarray              # prepared for the index
    build_s: float
    size_bytes: int
    walls: list[float] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)
    batch_walls: list[float] = field(default_factory=list)
    ids: np.ndarray | None = None

    def wants_pass(self, s: SweepSettings) -> bool:
        return len(self.walls) < s.runs and sum(self.walls) <= s.budget_s

    def single_pass(self, s: SweepSettings) -> None:
        """One timed one-query-at-a-time pass after a warm-up (before the first: the untimed pass taking the ids)."""
        q = self.queries
        rows = [q[i:i + 1] for i in range(len(q))]
        self.index.set_threads(s.threads)
        # bound again each pass: usearch and hnswlib keep the query parameter on the shared index object
        search = self.index.searcher(s.k, **self.query_params)
        if self.ids is None:   # recall from an untimed pass (the first warm-up): every pass runs the same queries
            self.ids = np.full((len(q), s.k), -1, dtype=np.int64)
            for i, r in enumerate(collect(search, rows)):
                r = np.asarray(r).reshape(-1)
                self.ids[i, :r.size] = r
        else:
            for row in rows[:min(s.warmup, REWARM)]:
                search(row)
        wall, lat, _ = time_pass(search, rows)
        self.walls.append(wall)
        self.latencies.append(lat)

    def batch_pass(self, s: SweepSettings) -> None:
        if len(self.batch_walls) >= s.runs or sum(self.batch_walls) > s.budget_s:
            return
        self.index.set_threads(s.batch_threads)
        t0 = time.perf_counter()
        self.index.search(self.queries, s.k, **self.query_params)
        self.batch_walls.append(time.perf_counter() - t0)

    def metrics(self, data: BenchSet, s: SweepSettings) -> dict[str, float]:
        point = PointData(k=s.k, metric=data.metric, base=data.base, queries=data.queries,
                          gt_distances=data.gt_distances, gt_ids=data.gt_ids, ids=self.ids,
                          single_runs_s=self.walls, latencies_s=np.concatenate(self.latencies),
                          batch_runs_s=self.batch_walls, build_s=self.build_s, size_bytes=self.size_bytes,
                          ntotal=self.index.ntotal)
        return {**compute_metrics(point), "runs": len(self.walls), "batch_runs": len(self.batch_walls)}


def interleave(timings: Sequence[_Timing], s: SweepSettings, status: Callable[[str], None] | None = None) -> None:
    """Rounds of passes: round ``r`` runs one pass (single, then batch) of every point still within its budget,
    starting at position ``r * n // runs`` so that each point takes a different place in each round
    (drift within a round then falls on different points) and no point is always first."""
    n = len(timings)
    for r in range(s.runs):
        start = r * n // s.runs
        order = [t for t in [*timings[start:], *timings[:start]] if t.wants_pass(s)]
        if not order:
            return
        if status is not None:
            status(f"round {r + 1}/{s.runs} ({len(order)} points)")
        for t in order:
            t.single_pass(s)
            t.batch_pass(s)


def measure_point(index: VectorIndex, data: BenchSet, k: int, query_params: dict[str, Any], threads: int,
                  batch_threads: int, runs: int, warmup: int, build_s: float, size_bytes: int,
                  budget_s: float = float("inf")) -> dict[str, float]:
    """All registered metrics of the built ``index`` under ``query_params``, its passes run back to back
    (see :class:`SweepSettings` for the arguments; :func:`measure_group` interleaves many points)."""
    s = SweepSettings(k, threads, runs, warmup, batch_threads, budget_s)
    t = _Timing(index, query_params, index.prepare_queries(data.queries), build_s, size_bytes)
    interleave([t], s)
    return t.metrics(data, s)


def point_label(spec: IndexSpec, query_params: dict[str, Any]) -> str:
    """``faiss:HNSW32,Flat?efSearch=32`` -- the spec text of one point."""
    if not query_params:
        return spec.label
    return spec.label + "?" + "&".join(f"{k}={v}" for k, v in query_params.items())


def base_row(data: BenchSet, spec: IndexSpec, index: VectorIndex, qp: dict[str, Any],
             s: SweepSettings) -> dict[str, Any]:
    """The identifying columns of a point (``workbench.bench.results.KEY`` among them)."""
    return {"dataset": data.name, "dataset_digest": data.digest, "metric": data.metric,
            "n_base": len(data.base), "n_queries": len(data.queries), "dim": data.base.shape[1],
            "index": spec.label, "family": index.family, "library": index.library,
            "build_params": json.dumps(spec.build, sort_keys=True), "point": point_label(spec, qp),
            "k": s.k, "threads": s.threads, "batch_threads": s.batch_threads}


def measure_group(data: BenchSet, group: Group, settings: SweepSettings,
                  status: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Build every configuration of ``group`` once (on ``batch_threads`` threads), interleave the timed
    passes of all its points (:func:`interleave`), return the finished rows (base columns, build report,
    every metric, server-side times for a database). Writes nothing: the driver does."""
    built, timings = [], []
    for spec, points in group:
        if status is not None:
            status(f"building {spec.label}")
        index = spec.make(data.metric)
        index.set_threads(settings.batch_threads)
        t0 = time.perf_counter()
        index.build(data.base)
        build_s = time.perf_counter() - t0
        size, q = index.size_bytes(), index.prepare_queries(data.queries)
        for qp in points:
            built.append((spec, index, qp))
            timings.append(_Timing(index, qp, q, build_s, size))
    interleave(timings, settings, status)
    rows = []
    for (spec, index, qp), t in zip(built, timings):
        row = base_row(data, spec, index, qp, settings)
        row["query_params"] = json.dumps(index.effective_query_params(**qp), sort_keys=True)
        row.update(t.metrics(data, settings))
        row.update(index.build_report())
        server = index.server_times_ms(data.queries[:SERVER_SAMPLE], settings.k, **qp)
        if server is not None:  # what of the client latency the server spent executing
            row["server_p50_ms"] = float(np.percentile(server, 50))
            row["server_p99_ms"] = float(np.percentile(server, 99))
        row["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
        rows.append(row)
    return rows


def measure_group_task(shared: BenchSet, item: GroupItem) -> list[dict[str, Any]]:
    """An executor's task: ``measure_group(shared, *item)`` (module level, so it pickles by reference)."""
    group, settings = item
    return measure_group(shared, group, settings)


def estimated_bytes(spec: IndexSpec, n: int, dim: int) -> float:
    """A built index's memory, estimated before building: the per-vector formula where one is known
    (faiss, hnswlib), else a raw float32 copy plus graph links; 1.5x for what the build holds besides."""
    per_vector = None
    if spec.library in ("faiss", "hnswlib"):
        per_vector, _ = bytes_per_vector_formula(spec, dim)
    return 1.5 * n * (per_vector if per_vector is not None else 4 * dim + 256)


def local_groups(data: BenchSet, todo: Group, available_bytes: float | None = None) -> list[Group]:
    """The whole sweep as one group when its indexes' estimated bytes fit in ``MEMORY_SHARE`` of the
    available memory (psutil), else consecutive chunks that each fit (a configuration alone at least)."""
    limit = MEMORY_SHARE * (psutil.virtual_memory().available if available_bytes is None else available_bytes)
    n, dim = data.base.shape
    groups: list[Group] = []
    used = 0.0
    for entry in todo:
        need = estimated_bytes(entry[0], n, dim)
        if not groups or used + need > limit:
            groups.append([])
            used = 0.0
        groups[-1].append(entry)
        used += need
    return groups


def run_sweep(data: BenchSet, specs: Sequence[IndexSpec], k: int = 10, threads: int = 1,
              out_dir: str | Path | None = None, runs: int = DEFAULT_RUNS, warmup: int = 200,
              batch_threads: int | None = None, on_point: Callable[[dict[str, Any]], None] | None = None,
              progress: bool = True, budget_s: float = 10.0, executor: Executor | None = None) -> pd.DataFrame:
    """Measure every (spec, query point); return all rows (earlier ones included when resuming).

    With ``out_dir`` the rows go to ``out_dir/results.parquet`` as each group finishes, and points already
    there are skipped. Locally (``executor=None``) the harness picks the groups (:func:`local_groups`);
    with an ``executor`` each build configuration is one group, run as
    ``executor.map(measure_group_task, items, shared=data)``. Every row carries ``node`` (this host's name
    locally, else the executor's node id); only this process writes the file and calls ``on_point(row)``
    (after the row is on disk). A task the executor reports as a :class:`TaskFailure` is listed in
    ``out_dir/failures.json``, the others are written, then :class:`~workbench.errors.SweepIncomplete`
    names the failed configurations; running again measures only them.
    """
    if k > len(data.base):
        raise QueryError(f"k={k} is larger than the data set ({len(data.base)} vectors)")
    if k > data.gt_ids.shape[1]:
        raise QueryError(f"k={k} exceeds the ground truth depth ({data.gt_ids.shape[1]})")
    settings = SweepSettings(k, threads, runs, warmup, batch_threads or os.cpu_count() or 1, budget_s)
    indexes = [spec.make(data.metric) for spec in specs]
    for index in indexes:                       # fail on a bad factory string before hours of building
        index.validate(data.base.shape[1])
    path = Path(out_dir) / RESULTS_FILE if out_dir is not None else None
    previous = read_results(path) if path is not None else pd.DataFrame()
    done = measured_keys(previous)
    rows: list[dict[str, Any]] = previous.to_dict("records")
    todo: Group = [(spec, [qp for qp in spec.points() if point_key(base_row(data, spec, index, qp, settings)) not in done])
                   for spec, index in zip(specs, indexes)]
    todo = [(spec, points) for spec, points in todo if points]
    groups = [[entry] for entry in todo] if executor is not None else local_groups(data, todo)
    items: list[GroupItem] = [(group, settings) for group in groups]
    failures: list[TaskFailure] = []
    with tqdm(total=sum(len(p) for _, p in todo), desc="ANN points", unit="point", disable=not progress) as bar:
        if executor is not None:
            results: Iterable[tuple[Any, Any, str]] = executor.map(
                measure_group_task, items, shared=data, num_cpus=settings.threads)
        else:
            host = socket.gethostname()
            results = ((item, measure_group(data, *item, status=bar.set_postfix_str), host) for item in items)
        for item, result, node in results:
            if not isinstance(result, list) and hasattr(result, "error"):   # a TaskFailure (see its docstring)
                failures.append(TaskFailure(result.item, str(result.error)))
                continue
            for row in result:
                row["node"] = node
            rows += result
            if path is not None:
                write_results(rows, path)
            for row in result if on_point is not None else ():
                on_point(row)
            bar.update(len(result))
    _record_failures(failures, out_dir, len(rows) - len(previous))
    return pd.DataFrame(rows)


def _record_failures(failures: list[TaskFailure], out_dir: str | Path | None, written: int) -> None:
    """``failures.json`` and :class:`SweepIncomplete` for the tasks that failed; a stale file is removed."""
    target = Path(out_dir) / FAILURES_FILE if out_dir is not None else None
    if not failures:
        if target is not None and target.is_file():
            target.unlink()
        return
    # the error's last line (a traceback ends with the exception), so the message stays one line
    records = [{"configs": [spec.text for spec, _ in f.item[0]], "error": (f.error.strip().splitlines() or ["?"])[-1]}
               for f in failures]
    if target is not None:
        atomic_write_json(target, records)
    failed = tuple(c for r in records for c in r["configs"])
    where = f"; listed in {target}" if target is not None else ""
    raise SweepIncomplete(f"{len(failed)} build configuration(s) failed: "
                          + "; ".join(f"{', '.join(r['configs'])} ({r['error']})" for r in records)
                          + f"; {written} point(s) of the others written{where}; run the sweep again to "
                          "measure the failed ones", failed)
