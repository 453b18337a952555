"""The filtered-search sweep: recall, short results and latency of filtered searches across selectivity.

A predicate over the attribute table (``workbench.index.metadata``) selects the ids a result may contain;
each index honours it through its own filtering capability (``VectorIndex.search(..., allowed=ids,
filter_mode=...)``). The strategies compared (as in the filtered-search literature, e.g. Gollapudi et al.,
"Filtered-DiskANN", WWW 2023; Patel et al., "ACORN", SIGMOD 2024):

- ``prefilter``: ``filter_mode="pre"``, the library's own filter while it traverses the index;
- ``postfilter``: ``filter_mode="post"`` with an over-fetch factor: ``k * overfetch`` unfiltered
  neighbours, the disallowed dropped. It comes back short once selectivity falls below ``1 / overfetch``;
- ``exact_subset``: the exact index (``workbench.index.exact``) searching the allowed vectors only; exact,
  and the ground truth of filtered recall.

Recall is the vector kernel's (``workbench.vectors.recall``) with ``allowed``: tie-aware (ann-benchmarks)
and by id overlap, over ``min(k, |allowed|)`` true neighbours. Each measured row goes to ``on_point``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from workbench.bench.timing import time_single_queries
from workbench.errors import DatasetError, QueryError
from workbench.index.base import VectorIndex
from workbench.index.exact import ExactIndex
from workbench.index.metadata import Metadata, selectivity_predicate
from workbench.index.spec import IndexSpec
from workbench.vectors.recall import is_allowed, recall_ids, recall_ties

DEFAULT_SELECTIVITIES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5)
DEFAULT_OVERFETCH = (1, 2, 10)
#: strategy -> the index's filter mode (``exact_subset`` is the exact index, pre-filtered)
STRATEGIES = {"prefilter": "pre", "postfilter": "post", "exact_subset": "pre"}
EXACT_LABEL = "exact"


@dataclass
class IndexUnderTest:
    """A built index and the query parameters to search it with, named for tables and plots."""

    label: str
    index: VectorIndex
    query_params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.index.family


def params_text(params: Mapping[str, Any]) -> str:
    """``ef=64`` / ``nprobe=16`` / ``""``: a point's query parameters as text."""
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def build_indexes(base: np.ndarray, metric: str, specs: Sequence[IndexSpec], threads: int = 1,
                  progress: bool = True) -> list[IndexUnderTest]:
    """Build each spec once; one entry per point of its query sweep."""
    entries = []
    for spec in tqdm(specs, desc="building indexes", disable=not progress):
        index = spec.make(metric)
        index.set_threads(threads)
        index.build(base)
        for point in spec.points():
            label = spec.label + ("?" + params_text(point) if point else "")
            entries.append(IndexUnderTest(label, index, point))
    return entries


def sweep_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows of a filtered sweep as a frame; ``overfetch`` stays an integer column with gaps."""
    frame = pd.DataFrame(list(rows))
    if len(frame):
        frame["overfetch"] = frame["overfetch"].astype("Int64")
    return frame


def point_measures(base: np.ndarray, q: np.ndarray, results: Sequence[Any], truth: tuple[np.ndarray, np.ndarray],
                   allowed: np.ndarray, k: int, metric: str, walls: Sequence[float],
                   seconds: np.ndarray) -> dict[str, float]:
    """Recall, short results and latency of one filtered point: ``results`` are the per-query ids as
    returned (possibly fewer than k), ``truth`` the exact ``(distances, ids)`` on the allowed subset."""
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for i, r in enumerate(results):
        r = np.asarray(r, dtype=np.int64).reshape(-1)
        ids[i, :r.size] = r
    n_results = (ids >= 0).sum(axis=1)
    return {
        "recall": float(recall_ties(base, q, ids, truth[0], k, metric, allowed).mean()),
        "recall_ids": float(recall_ids(ids, truth[1], k, allowed).mean()),
        "frac_short": float((n_results < min(k, allowed.size)).mean()),
        "mean_results": float(n_results.mean()),
        "n_disallowed": int(((ids >= 0) & ~is_allowed(ids, allowed)).sum()),
        "p50_ms": float(np.percentile(seconds, 50) * 1e3),
        "p95_ms": float(np.percentile(seconds, 95) * 1e3),
        "qps": float(len(q) / min(walls)),
    }


def curve_label(row: Mapping[str, Any]) -> str:
    """One name per measured curve: index, strategy and (for postfilter) over-fetch."""
    if row["strategy"] == "exact_subset":
        return "exact subset"
    label = f"{row['index']} {row['strategy']}"
    return label + f" x{int(row['overfetch'])}" if row["strategy"] == "postfilter" else label


def _points(indexes: Sequence[IndexUnderTest], reference: IndexUnderTest, selectivities: Sequence[float],
            overfetch: Sequence[int], strategies: Sequence[str]) -> list[tuple[float, str, IndexUnderTest, int | None]]:
    """(selectivity, strategy, entry, over-fetch) in measuring order: the exact reference first."""
    points = []
    for s in selectivities:
        if "exact_subset" in strategies:
            points.append((s, "exact_subset", reference, None))
        for entry in indexes:
            if "prefilter" in strategies:
                points.append((s, "prefilter", entry, None))
            if "postfilter" in strategies:
                points.extend((s, "postfilter", entry, f) for f in overfetch)
    return points


def filtered_sweep(base: np.ndarray, queries: np.ndarray, metric: str, metadata: Metadata,
                   indexes: Sequence[IndexUnderTest], *, k: int = 10,
                   selectivities: Sequence[float] = DEFAULT_SELECTIVITIES,
                   overfetch: Sequence[int] = DEFAULT_OVERFETCH, strategies: Sequence[str] = tuple(STRATEGIES),
                   threads: int = 1, runs: int = 3, warmup: int = 10, dataset: str = "",
                   on_point: Callable[[dict[str, Any]], None] | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Recall, short results and single-query latency per selectivity, strategy and index.

    Each selectivity ``s`` selects ids with ``u < s`` from ``metadata``. The exact index over ``base``
    gives the ground truth and the ``exact_subset`` rows. Queries run one at a time on ``threads`` threads
    (BLAS and OpenMP pools limited too), each through ``index.searcher(k, allowed=..., filter_mode=...)`` so
    that the library call is timed, as the ANN harness does: ``warmup`` untimed queries, then the best of
    ``runs`` passes (QPS = queries / wall time of that pass, p50/p95 over its queries). The library's
    filter object is built once per selectivity, before timing. ``frac_short`` is the share of queries with
    fewer than ``min(k, n_allowed)`` results; ``select_ms`` the time DuckDB took to evaluate the predicate.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise QueryError(f"unknown strategy {unknown[0]!r}; expected one of {', '.join(STRATEGIES)}")
    if metadata.n != len(base):
        raise DatasetError(f"metadata table {metadata.table!r} has {metadata.n} rows but the base has "
                           f"{len(base)} vectors")
    for entry in indexes:
        if entry.index.ntotal != len(base):
            raise DatasetError(f"index {entry.label} holds {entry.index.ntotal} vectors but the base has {len(base)}")
    exact = ExactIndex(metric)
    exact.build(base)
    reference = IndexUnderTest(EXACT_LABEL, exact)
    q = exact.prepare_queries(queries)
    rows_in = [q[i:i + 1] for i in range(len(q))]
    for entry in [reference, *indexes]:
        entry.index.set_threads(threads)

    rows: list[dict[str, Any]] = []
    truth: dict[float, tuple[np.ndarray, tuple[np.ndarray, np.ndarray], str, float]] = {}
    points = _points(indexes, reference, selectivities, overfetch, strategies)
    with threadpool_limits(limits=threads):
        for s, strategy, entry, f in tqdm(points, desc=f"filtered {dataset}".strip(), disable=not progress):
            if s not in truth:
                predicate = selectivity_predicate(s)
                t0 = time.perf_counter()
                allowed = metadata.select(predicate)
                select_ms = (time.perf_counter() - t0) * 1e3
                truth[s] = (allowed, exact.search(q, k, allowed=allowed), predicate, select_ms)
            allowed, (true_d, true_ids), predicate, select_ms = truth[s]
            search = entry.index.searcher(k, allowed=allowed, filter_mode=STRATEGIES[strategy],
                                          overfetch=f or 1, **entry.query_params)
            walls, seconds, results = time_single_queries(search, rows_in, runs, warmup)
            row = {
                "dataset": dataset, "metric": metric, "n_base": len(base), "n_queries": len(q),
                "k": k, "threads": threads, "selectivity": float(s), "predicate": predicate,
                "n_allowed": int(allowed.size), "selectivity_actual": allowed.size / len(base),
                "select_ms": select_ms, "index": entry.label, "family": entry.family,
                "query_params": params_text(entry.query_params), "strategy": strategy, "overfetch": f,
                **point_measures(exact.vectors, q, results, (true_d, true_ids), allowed, k, metric, walls, seconds),
            }
            rows.append(row)
            if on_point is not None:
                on_point(row)
    return sweep_frame(rows)


def collapse_points(frame: pd.DataFrame, min_recall: float = 0.9) -> dict[str, float | None]:
    """For each curve, the largest swept selectivity at which mean recall falls below ``min_recall``."""
    out: dict[str, float | None] = {}
    for label, group in frame.assign(curve=frame.apply(curve_label, axis=1)).groupby("curve", sort=True):
        low = group.loc[group["recall"] < min_recall, "selectivity"]
        out[str(label)] = float(low.max()) if len(low) else None
    return out


def recommend(frame: pd.DataFrame, min_recall: float = 0.9) -> pd.DataFrame:
    """Per selectivity, the fastest curve (lowest median latency) whose recall is at least ``min_recall``.

    The median ranks them, not QPS (queries / wall time of a pass): on a shared machine a few stalled
    calls move a pass's wall time.
    """
    curves = frame.assign(curve=frame.apply(curve_label, axis=1))
    good = curves[curves["recall"] >= min_recall]
    best = good.loc[good.groupby("selectivity")["p50_ms"].idxmin()]
    return best[["selectivity", "curve", "recall", "frac_short", "p50_ms", "qps"]].reset_index(drop=True)


def recall_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Recall by curve (rows) and selectivity (columns), for printing."""
    table = frame.assign(curve=frame.apply(curve_label, axis=1)).pivot_table(
        index="curve", columns="selectivity", values="recall", sort=False)
    table.columns = [f"{100 * c:g}%" for c in table.columns]
    return table.round(3).replace({np.nan: None})
