"""Filtered search inside the database: recall, the silent under-return and latency of pgvector's and
LanceDB's own filtering, across selectivity, in the frame of the in-process sweep (``bench.filtered``).

The attribute table (``workbench.index.metadata``, ``u`` uniform so that ``u < s`` selects exactly ``s``)
is loaded into the pgvector table beside the vectors, one btree index per column, and a query filters with
SQL ``WHERE u < s`` (``PgvectorIndex.where_searcher``). pgvector filters *after* the approximate index scan
(pgvector README, "Filtering"; issues #259, #751), so without iterative scans an HNSW query returns at most
the allowed share of ``hnsw.ef_search`` rows. The strategies (pgvector 0.8's iterative index scans):

- HNSW ``iterative_off`` / ``strict_order`` / ``relaxed_order`` (``hnsw.iterative_scan``, bounded by
  ``hnsw.max_scan_tuples``; relaxed rows are re-sorted in an outer query), the planner kept on the vector
  index (``enable_sort = off``), as it is whenever it picks the index;
- IVFFlat ``iterative_off`` / ``relaxed_order`` (``ivfflat.iterative_scan``, bounded by ``ivfflat.max_probes``);
- ``planner`` on ``pgvector:exact`` (no vector index): the planner's exact path, a btree bitmap scan on ``u``
  or a sequential scan, then an exact top-k sort;
- LanceDB ``prefilter`` (its filter before the vector search) and ``postfilter`` (its top k, then the
  filter: ``filter_mode="post"``, over-fetch 1).

Rows carry the columns of ``bench.filtered.filtered_sweep`` (recall against the exact top-k of the
allowed subset, ``frac_short`` = share of queries with fewer than ``min(k, |allowed|)`` rows, p50/p95,
QPS of the best pass) plus ``curve``, ``in_database`` and, for pgvector, ``plan`` (the scan the planner ran).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from tqdm.auto import tqdm

from workbench.bench.filtered import DEFAULT_SELECTIVITIES, params_text, point_measures, sweep_frame
from workbench.bench.timing import time_single_queries
from workbench.errors import DatasetError, IndexSpecError
from workbench.index.base import VectorIndex
from workbench.index.exact import ExactIndex
from workbench.index.metadata import Metadata, selectivity_predicate
from workbench.index.pgvector import PgvectorIndex
from workbench.index.spec import IndexSpec
from workbench.services.postgres import connect

#: per index kind: (strategy, query parameters it sets over the swept point, planner kept on the vector index);
#: the iterative scans' bounds at pgvector's defaults, shown in the rows (a swept point may set them)
PG_STRATEGIES: dict[str, tuple[tuple[str, dict[str, Any], bool], ...]] = {
    "hnsw": (("iterative_off", {"iterative_scan": "off"}, True),
             ("strict_order", {"iterative_scan": "strict_order", "max_scan_tuples": 20000}, True),
             ("relaxed_order", {"iterative_scan": "relaxed_order", "max_scan_tuples": 20000}, True)),
    "ivfflat": (("iterative_off", {"iterative_scan": "off"}, True),
                ("relaxed_order", {"iterative_scan": "relaxed_order", "max_probes": 32768}, True)),
    "exact": (("planner", {}, False),),
}
LANCE_STRATEGIES = (("prefilter", "pre"), ("postfilter", "post"))


@dataclass
class DbCurve:
    """One strategy on one built index at one query point; ``filter_mode`` None means SQL ``WHERE``."""

    index: VectorIndex
    strategy: str
    query_params: dict[str, Any] = field(default_factory=dict)
    index_scan: bool = False
    filter_mode: str | None = None
    label: str = ""
    point: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``pgvector:hnsw ef_search=40 strict_order``: family, the swept point, strategy."""
        return " ".join(filter(None, [self.index.family, params_text(self.point), self.strategy]))

    def searcher(self, k: int, predicate: str, allowed: np.ndarray) -> Callable[[np.ndarray], Any]:
        if self.filter_mode is None:
            return self.index.where_searcher(k, predicate, self.index_scan, **self.query_params)
        return self.index.searcher(k, allowed=allowed, filter_mode=self.filter_mode, overfetch=1,
                                   **self.query_params)


def _strategy_params(strategy: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A swept point under a strategy: the point may set the iterative scan's bounds, not the scan itself."""
    out = {**strategy, **point}
    if "iterative_scan" in strategy:
        out["iterative_scan"] = strategy["iterative_scan"]
    return out


def build_db_curves(base: np.ndarray, metric: str, specs: Sequence[IndexSpec], metadata: Metadata,
                    progress: bool = True) -> list[DbCurve]:
    """Build each pgvector spec (attributes loaded, btree per column) and LanceDB spec once; one curve per
    strategy of each query point."""
    bad = [s.text for s in specs if s.library not in ("pgvector", "lancedb")]
    if bad:
        raise IndexSpecError(f"in-database filtering takes pgvector and lancedb specs, got {', '.join(bad)} "
                             "(in-process libraries are swept by `workbench filtered`)")
    frame = metadata.frame()
    curves = []
    for spec in tqdm(specs, desc="building database indexes", disable=not progress):
        if spec.library == "pgvector":
            index: VectorIndex = PgvectorIndex(metric=metric, attributes=frame, **spec.build)
        else:
            index = spec.make(metric)
        index.build(base)
        for point in spec.points():
            label = spec.label + ("?" + params_text(point) if point else "")
            if spec.library == "lancedb":
                curves += [DbCurve(index, s, dict(point), filter_mode=mode, label=label, point=point)
                           for s, mode in LANCE_STRATEGIES]
            else:
                curves += [DbCurve(index, s, _strategy_params(qp, point), scan, label=label, point=point)
                           for s, qp, scan in PG_STRATEGIES[index.kind]]
    return curves


def explain_plan(conn: psycopg.Connection, statement: str, settings: dict[str, str],
                 args: dict[str, Any]) -> dict[str, Any]:
    """The plan PostgreSQL runs for ``statement`` under ``settings`` (``EXPLAIN (FORMAT JSON)``)."""
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn.execute("EXPLAIN (FORMAT JSON) " + statement, args).fetchone()[0][0]["Plan"]


def scans(plan: dict[str, Any]) -> list[dict[str, str]]:
    """The scan nodes of a plan tree: node type, relation and index (when there is one)."""
    out = []
    if "Relation Name" in plan:
        out.append({"node": plan["Node Type"], "relation": plan["Relation Name"],
                    "index": plan.get("Index Name", "")})
    for child in plan.get("Plans", []):
        out += scans(child)
    return out


def _plan_text(curve: DbCurve, k: int, predicate: str, vector: np.ndarray) -> str:
    """``Index Scan (..._v_idx)``: how PostgreSQL ran a pgvector curve's query."""
    if not isinstance(curve.index, PgvectorIndex):
        return ""
    statement, settings = curve.index.statement(k, where=predicate, index_scan=curve.index_scan,
                                                **curve.query_params)
    with connect() as conn:
        found = scans(explain_plan(conn, statement, settings, {"q": vector}))
    return ", ".join(s["node"] + (f" ({s['index'].replace(s['relation'] + '_', '')})" if s["index"] else "")
                     for s in found)


def db_filtered_sweep(base: np.ndarray, queries: np.ndarray, metric: str, metadata: Metadata,
                      curves: Sequence[DbCurve], *, k: int = 10,
                      selectivities: Sequence[float] = DEFAULT_SELECTIVITIES, runs: int = 3, warmup: int = 10,
                      dataset: str = "", on_point: Callable[[dict[str, Any]], None] | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """Recall, under-return and single-query latency per selectivity and curve (see the module docstring).

    Timing is the in-process sweep's: one query at a time through the curve's searcher (statement prepared,
    filter bound), ``warmup`` untimed queries, the best of ``runs`` passes."""
    if metadata.n != len(base):
        raise DatasetError(f"metadata table {metadata.table!r} has {metadata.n} rows but the base has "
                           f"{len(base)} vectors")
    exact = ExactIndex(metric)
    exact.build(base)
    q = exact.prepare_queries(queries)
    rows_in = [q[i:i + 1] for i in range(len(q))]
    rows: list[dict[str, Any]] = []
    points = [(s, c) for s in selectivities for c in curves]
    truth: dict[float, tuple] = {}
    for s, curve in tqdm(points, desc=f"in-database filtered {dataset}".strip(), disable=not progress):
        if s not in truth:
            predicate = selectivity_predicate(s)
            t0 = time.perf_counter()
            allowed = metadata.select(predicate)
            truth[s] = (predicate, allowed, (time.perf_counter() - t0) * 1e3, exact.search(q, k, allowed=allowed))
        predicate, allowed, select_ms, (true_d, true_ids) = truth[s]
        walls, seconds, results = time_single_queries(curve.searcher(k, predicate, allowed), rows_in, runs,
                                                      min(warmup, len(rows_in)))
        row = {
            "dataset": dataset, "metric": metric, "n_base": len(base), "n_queries": len(q), "k": k, "threads": 1,
            "selectivity": float(s), "predicate": predicate, "n_allowed": int(allowed.size),
            "selectivity_actual": allowed.size / len(base), "select_ms": select_ms, "index": curve.label,
            "family": curve.index.family, "query_params": params_text(curve.query_params),
            "strategy": curve.strategy, "overfetch": 1 if curve.filter_mode == "post" else None,
            **point_measures(exact.vectors, q, results, (true_d, true_ids), allowed, k, metric, walls, seconds),
            "curve": curve.name, "in_database": True,
            "plan": _plan_text(curve, k, predicate, q[0]),
        }
        rows.append(row)
        if on_point is not None:
            on_point(row)
    return sweep_frame(rows)


def under_return(frame: pd.DataFrame, selectivity: float) -> dict[str, float]:
    """Per curve, the share of short queries at the swept selectivity nearest ``selectivity``."""
    if not len(frame):
        return {}
    nearest = frame["selectivity"].iloc[(frame["selectivity"] - selectivity).abs().argmin()]
    at = frame[frame["selectivity"] == nearest]
    return {str(c): float(v) for c, v in zip(at["curve"], at["frac_short"])}
