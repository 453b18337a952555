"""The ANN benchmark runner: build each configuration once, sweep its query parameters, measure.

Measurement follows ann-benchmarks (Aumüller et al., 2020): queries one at a time on ``threads``
threads, a warm-up pass, then the best of ``runs`` passes (QPS = queries / wall time of the pass;
latency percentiles from that pass). Batch QPS (all queries in one call on all cores, faiss-style)
is reported beside it, labelled, since the two differ by 10x or more.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.bench.results import (
    measured_keys,
    point_key,
    read_results,
    write_results,
)
from workbench.errors import QueryError
from workbench.index.base import VectorIndex
from workbench.index.groundtruth import GT_K, ground_truth, vectors_digest
from workbench.index.metrics import PointData, compute_metrics
from workbench.index.spec import IndexSpec
from workbench.vectors.kernel import pair_distances, prepare

RESULTS_FILE = "results.parquet"
SERVER_SAMPLE = 100  # queries whose server-side execution time a database point reports


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


def time_single_queries(search_one: Callable[[np.ndarray], Any], rows: Sequence[np.ndarray], runs: int,
                        warmup: int, budget_s: float = float("inf")) -> tuple[list[float], np.ndarray, list[Any]]:
    """One query at a time: ``(wall time of each pass, per-query latencies of the best pass, its results)``.

    One clock read per query keeps the loop as close to a bare loop as Python allows. Passes stop early
    once ``budget_s`` is spent (at least one pass runs): a pass that long averages out scheduling noise."""
    now, n = time.perf_counter, len(rows)
    for row in rows[:warmup]:
        search_one(row)
    walls: list[float] = []
    best: tuple[list[float], list[Any]] | None = None
    for _ in range(runs):
        stamps, out = [0.0] * (n + 1), [None] * n
        for i in range(n):
            stamps[i] = now()
            out[i] = search_one(rows[i])
        stamps[n] = now()
        walls.append(stamps[n] - stamps[0])
        if walls[-1] == min(walls):
            best = (stamps, out)
        if sum(walls) > budget_s:
            break
    stamps, out = best
    return walls, np.diff(np.asarray(stamps)), out


def measure_point(index: VectorIndex, data: BenchSet, k: int, query_params: dict[str, Any], threads: int,
                  batch_threads: int, runs: int, warmup: int, build_s: float, size_bytes: int,
                  budget_s: float = float("inf")) -> dict[str, float]:
    """All registered metrics of ``index`` under ``query_params`` (see ``time_single_queries`` for ``budget_s``)."""
    q = index.prepare_queries(data.queries)
    index.set_threads(threads)
    rows = [q[i:i + 1] for i in range(len(q))]
    walls, latencies, results = time_single_queries(index.searcher(k, **query_params), rows, runs,
                                                    min(warmup, len(rows)), budget_s)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for i, r in enumerate(results):
        r = np.asarray(r).reshape(-1)
        ids[i, :r.size] = r
    index.set_threads(batch_threads)
    batch_walls: list[float] = []
    while len(batch_walls) < runs and sum(batch_walls) <= budget_s:
        t0 = time.perf_counter()
        index.search(q, k, **query_params)
        batch_walls.append(time.perf_counter() - t0)
    point = PointData(k=k, metric=data.metric, base=data.base, queries=data.queries,
                      gt_distances=data.gt_distances, gt_ids=data.gt_ids, ids=ids, single_runs_s=walls,
                      latencies_s=latencies, batch_runs_s=batch_walls, build_s=build_s, size_bytes=size_bytes,
                      ntotal=index.ntotal)
    return {**compute_metrics(point), "runs": len(walls), "batch_runs": len(batch_walls)}


def point_label(spec: IndexSpec, query_params: dict[str, Any]) -> str:
    """``faiss:HNSW32,Flat?efSearch=32`` -- the spec text of one point."""
    if not query_params:
        return spec.label
    return spec.label + "?" + "&".join(f"{k}={v}" for k, v in query_params.items())


def run_sweep(data: BenchSet, specs: Sequence[IndexSpec], k: int = 10, threads: int = 1,
              out_dir: str | Path | None = None, runs: int = 3, warmup: int = 200,
              batch_threads: int | None = None, on_point: Callable[[dict[str, Any]], None] | None = None,
              progress: bool = True, budget_s: float = 10.0) -> pd.DataFrame:
    """Measure every (spec, query point); return all rows (earlier ones included when resuming).

    With ``out_dir`` the rows go to ``out_dir/results.parquet`` after each point, and points already
    there are skipped. Each configuration is built once (on ``batch_threads`` threads, default all cores)
    and its query parameters are swept on the built index. ``on_point(row)`` is called with each newly
    measured row, after it is on disk. A point's timed passes stop after ``budget_s`` seconds (at least
    one pass): slow exact scans would otherwise dominate.
    """
    if k > len(data.base):
        raise QueryError(f"k={k} is larger than the data set ({len(data.base)} vectors)")
    if k > data.gt_ids.shape[1]:
        raise QueryError(f"k={k} exceeds the ground truth depth ({data.gt_ids.shape[1]})")
    batch_threads = batch_threads or os.cpu_count() or 1
    indexes = [spec.make(data.metric) for spec in specs]
    for index in indexes:                       # fail on a bad factory string before hours of building
        index.validate(data.base.shape[1])
    path = Path(out_dir) / RESULTS_FILE if out_dir is not None else None
    previous = read_results(path) if path is not None else pd.DataFrame()
    done = measured_keys(previous)
    rows: list[dict[str, Any]] = previous.to_dict("records")

    def base_row(spec: IndexSpec, index: VectorIndex, qp: dict[str, Any]) -> dict[str, Any]:
        return {"dataset": data.name, "dataset_digest": data.digest, "metric": data.metric,
                "n_base": len(data.base), "n_queries": len(data.queries), "dim": data.base.shape[1],
                "index": spec.label, "family": index.family, "library": index.library,
                "build_params": json.dumps(spec.build, sort_keys=True), "point": point_label(spec, qp),
                "k": k, "threads": threads, "batch_threads": batch_threads}

    todo = [(spec, [qp for qp in spec.points() if point_key(base_row(spec, index, qp)) not in done])
            for spec, index in zip(specs, indexes)]
    total = sum(len(points) for _, points in todo)
    with tqdm(total=total, desc="ANN points", unit="point", disable=not progress) as bar:
        for spec, points in todo:
            if not points:
                continue
            bar.set_postfix_str(f"building {spec.label}")
            index = spec.make(data.metric)
            index.set_threads(batch_threads)
            t0 = time.perf_counter()
            index.build(data.base)
            build_s = time.perf_counter() - t0
            size = index.size_bytes()
            build_report = index.build_report()
            for qp in points:
                bar.set_postfix_str(point_label(spec, qp))
                row = base_row(spec, index, qp)
                row["query_params"] = json.dumps(index.effective_query_params(**qp), sort_keys=True)
                row.update(measure_point(index, data, k, qp, threads, batch_threads, runs, warmup, build_s, size,
                                         budget_s))
                row.update(build_report)
                server = index.server_times_ms(data.queries[:SERVER_SAMPLE], k, **qp)
                if server is not None:  # what of the client latency the server spent executing
                    row["server_p50_ms"] = float(np.percentile(server, 50))
                    row["server_p99_ms"] = float(np.percentile(server, 99))
                row["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
                rows.append(row)
                if path is not None:
                    write_results(rows, path)
                if on_point is not None:
                    on_point(row)
                bar.update()
    return pd.DataFrame(rows)
