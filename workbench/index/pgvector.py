"""PostgreSQL + pgvector behind the index interface (pgvector 0.8, https://github.com/pgvector/pgvector).

Kinds: ``hnsw`` (Malkov & Yashunin, TPAMI 2018), ``ivfflat`` (lists of a k-means partition) and ``exact``
(no index: a sequential scan). ``type`` is what the index stores: ``vector`` (float32), ``halfvec``
(expression index on ``v::halfvec(d)``) or ``bit`` (binary quantization: index on
``binary_quantize(v)::bit(d)``, Hamming distance, then the ``rerank`` candidates re-ranked exactly by the
full vectors). The table always keeps the float32 vectors; the grammar is in ``pgvector_sql``.

Build: one table per index (``services.postgres.table_name``), filled with ``COPY ... FORMAT BINARY`` from
rows laid out by numpy (so load rows/s measures the server, not Python), ``VACUUM (ANALYZE)``, then ``CREATE INDEX``
under the recorded ``maintenance_work_mem`` and ``max_parallel_maintenance_workers``. ``build_stats``
holds load rows/s, the index build seconds, on-disk sizes (``pg_table_size``, ``pg_relation_size``,
``pg_indexes_size``) and the server's notices (e.g. "hnsw graph no longer fits into maintenance_work_mem").

Search: query parameters are server settings (``hnsw.ef_search``, ``ivfflat.probes``, iterative scans), set
once per point on the index's one connection, no rebuild. ``searcher`` runs ONE prepared statement per
query (``prepare=True``) and returns the list of ids; ``search`` loops the same statement and also
returns the exact distance computed by the server (cosine: ``1 - (v <=> q)``, ip: ``-(v <#> q)``, l2:
``(v <-> q)^2``), so batch QPS is the same one-connection loop. Caveats of pgvector, kept as they are:
without iterative scans HNSW returns at most ``ef_search`` rows, and filters (``WHERE id = ANY(...)``)
apply after the approximate scan, so a query can come back short (missing slots are id -1).

Threads: ``set_threads(n)`` sets ``max_parallel_workers_per_gather = n - 1`` (the leader is the n-th
process); only sequential scans use it (``exact``, filters), never an HNSW or IVFFlat index scan.
save/load: not supported -- the index is a table in a live server, not a file; rebuild from the vectors.
``close()`` (or dropping the object) drops the table; tables of killed runs go in the services sweep.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql as pgsql
from psycopg.rows import scalar_row

from workbench.errors import DatabaseError, DatasetError, IndexSpecError, QueryError
from workbench.index.base import VectorIndex
from workbench.index.pgvector_sql import (
    COLUMN_MAX_DIMS,
    INDEX_MAX_DIMS,
    PREDICATE_TYPES,
    QUERY_PARAMS,
    RERANK_DEFAULT,
    SETTINGS,
    attribute_columns,
    build_text,
    canonical_build,
    check_query_params,
    copy_in,
    copy_rows,
    index_sql,
    parse_build,
    query_sql,
)
from workbench.index.predicate import compile_predicate
from workbench.services.postgres import connect, ensure_server, table_name

__all__ = ["QUERY_PARAMS", "PgvectorIndex", "build_text", "parse_build"]   # the registry contract (index.spec)

def _plan_note(index_scan: bool) -> str:
    """A comment that makes the statement text differ by planner setting: a prepared statement keeps the
    plan it was given (psycopg prepares by text), and ``enable_sort`` changes the plan, not the execution."""
    return " /* enable_sort off */" if index_scan else ""


def _drop(conn: psycopg.Connection, table: str) -> None:
    try:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    except psycopg.Error:
        pass                      # server gone: the services sweep drops it next time
    finally:
        conn.close()


class PgvectorIndex(VectorIndex):
    """A pgvector table and index (``kind`` hnsw, ivfflat or exact) in the workbench's PostgreSQL."""

    library = "pgvector"
    QUERY_PARAMS = QUERY_PARAMS

    def __init__(self, kind: str = "hnsw", metric: str = "cosine", attributes: pd.DataFrame | None = None,
                 **build: Any) -> None:
        """``build``: m, ef_construction, type (hnsw); lists, type (ivfflat); maintenance_work_mem and
        max_parallel_maintenance_workers (both); pgvector's defaults fill the rest. ``attributes``: a table
        with ``id`` = row position (e.g. ``Metadata.frame()``) loaded beside the vectors, one btree index
        per column, for ``where_searcher``; not a build parameter (the vector index is the same)."""
        params = canonical_build(kind, {k: v for k, v in build.items() if k != "kind"}, "pgvector index")
        super().__init__(metric, **params)
        self.attributes = attributes
        #: attribute column -> type name for the predicate grammar (set by ``build``)
        self.attribute_types: dict[str, str] = {}
        self.kind, self.vtype = kind, params.get("type", "vector")
        self.build_stats: dict[str, Any] = {}
        self._conn: psycopg.Connection | None = None
        self._table = ""
        self._n = 0
        self._applied: dict[str, str] = {}
        self._finalizer: weakref.finalize | None = None

    @property
    def family(self) -> str:
        return f"pgvector:{self.kind}" + ("" if self.vtype == "vector" else f"-{self.vtype}")

    @property
    def label(self) -> str:
        return "pgvector:" + build_text(self.build_params)

    @property
    def table(self) -> str:
        """The table holding ``(id, v)`` (empty before ``build``)."""
        return self._table

    def validate(self, dim: int) -> None:
        if dim > COLUMN_MAX_DIMS:
            raise IndexSpecError(f"{self.label}: pgvector's vector type holds at most {COLUMN_MAX_DIMS:,} dimensions; "
                                 f"the vectors have {dim:,}")
        limit = INDEX_MAX_DIMS[self.vtype]
        if self.kind != "exact" and dim > limit:
            hint = " (type=halfvec indexes up to 4,000, type=bit up to 64,000)" if self.vtype == "vector" else ""
            raise IndexSpecError(f"{self.label}: pgvector {self.kind.upper()} indexes type={self.vtype} up to "
                                 f"{limit:,} dimensions; the vectors have {dim:,}{hint}")
        ensure_server()       # a server that cannot start fails here, and its start-up is not timed as build

    # -- building -------------------------------------------------------------------------------
    def _build(self, vectors: np.ndarray) -> None:
        self.close()
        n, d = vectors.shape
        columns = self._attribute_values(n)         # bad attributes fail before anything reaches the server
        attrs = attribute_columns(columns)
        conn = connect()
        table = table_name(self.kind)
        self._conn, self._table, self._applied = conn, table, {}
        self._finalizer = weakref.finalize(self, _drop, conn, table)
        notices: list[str] = []

        def notice(diag: psycopg.errors.Diagnostic) -> None:
            notices.append(diag.message_primary or "")
        conn.add_notice_handler(notice)
        try:
            extra = "".join(f', "{name}" {pg}' for name, (pg, _, _) in attrs.items())
            conn.execute(f"CREATE TABLE {table} (id int4 NOT NULL, v vector({d}){extra})")
            rows = copy_rows(vectors, columns=columns)
            t0 = time.perf_counter()
            copy_in(conn, table, rows)
            load_s = time.perf_counter() - t0
            del rows
            for name in attrs:
                conn.execute(f'CREATE INDEX ON {table} ("{name}")')      # btree: the planner's exact path
            self.attribute_types = {name: PREDICATE_TYPES[pg] for name, (pg, _, _) in attrs.items()}
            t0 = time.perf_counter()
            # now, not during the measurement: autovacuum would pick up a freshly filled table (its insert
            # threshold) and the first reads would set hint bits
            conn.execute(f"VACUUM (ANALYZE) {table}")
            vacuum_s, index_s = time.perf_counter() - t0, 0.0
            if self.kind != "exact":
                conn.execute("SELECT set_config('maintenance_work_mem', %s, false), "
                             "set_config('max_parallel_maintenance_workers', %s, false)",
                             (self.build_params["maintenance_work_mem"],
                              str(self.build_params["max_parallel_maintenance_workers"])))
                t0 = time.perf_counter()
                conn.execute(index_sql(table, self.kind, self.vtype, self.metric, d, self.build_params))
                index_s = time.perf_counter() - t0
            table_b, heap_b, index_b = conn.execute(
                "SELECT pg_table_size(%s::regclass), pg_relation_size(%s::regclass), pg_indexes_size(%s::regclass)",
                (table, table, table)).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise DatabaseError(f"{self.label}: building in PostgreSQL failed: {str(exc).strip().splitlines()[0]}") \
                from None
        conn.remove_notice_handler(notice)
        self._n = n
        self.build_stats = {"rows": n, "load_s": load_s, "load_rows_per_s": n / load_s if load_s > 0 else float("inf"),
                            "vacuum_analyze_s": vacuum_s, "index_build_s": index_s, "table_bytes": int(table_b),
                            "heap_bytes": int(heap_b), "index_bytes": int(index_b), "notices": notices,
                            "maintenance_work_mem": self.build_params.get("maintenance_work_mem"),
                            "max_parallel_maintenance_workers":
                                self.build_params.get("max_parallel_maintenance_workers")}

    def _attribute_values(self, n: int) -> dict[str, np.ndarray]:
        if self.attributes is None:
            return {}
        frame = self.attributes
        if "id" not in frame.columns or len(frame) != n or not np.array_equal(frame["id"].to_numpy(), np.arange(n)):
            raise DatasetError(f"{self.label}: attributes must have an 'id' column 0..{n - 1} in order, one row per "
                               f"vector; got {len(frame)} rows for {n} vectors")
        return {str(c): frame[c].to_numpy() for c in frame.columns if c != "id"}

    def close(self) -> None:
        """Drop the table and close the connection (also done when the object is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
        self._conn, self._finalizer, self._n = None, None, 0
        self.dim = None

    # -- query parameters -----------------------------------------------------------------------
    def _check_query_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return check_query_params(self.kind, self.vtype, params, self.label)

    def _default_query_params(self) -> dict[str, Any]:
        out = {name: default for name, (_, default) in SETTINGS[self.kind].items()}
        return out | ({"rerank": RERANK_DEFAULT} if self.vtype == "bit" else {})

    def settings(self, params: dict[str, Any], index_scan: bool = False) -> dict[str, str]:
        """Server settings (name -> value) for query parameters ``params``; absent ones at pgvector's default.
        ``index_scan`` turns sorting off, which leaves the planner the vector index's ordered scan only."""
        out = {guc: str(params.get(name, default)) for name, (guc, default) in SETTINGS[self.kind].items()}
        out["max_parallel_workers_per_gather"] = str(max(self.threads - 1, 0))
        out["enable_sort"] = "off" if index_scan else "on"
        return out

    def _apply(self, params: dict[str, Any], index_scan: bool = False) -> None:
        for guc, value in self.settings(params, index_scan).items():
            if self._applied.get(guc) == value:
                continue
            try:
                self._conn.execute("SELECT set_config(%s, %s, false)", (guc, value))
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.label}: PostgreSQL rejects {guc} = {value}: "
                                    f"{str(exc).strip().splitlines()[0]}") from None
            self._applied[guc] = value

    def statement(self, k: int, where: str | None = None, index_scan: bool = False,
                  **query_params: Any) -> tuple[str, dict[str, str]]:
        """The SQL ``searcher`` (``where_searcher`` with ``where``) prepares (one parameter ``%(q)b``: the
        query vector) and the settings it applies first, for bare-loop comparisons and ``EXPLAIN``."""
        self._check_k(k)
        params = {**self.query_params, **self._check_query_params(query_params)}
        self._check_rerank(k, params)
        return query_sql(self._table, self.vtype, self.metric, self.dim, k, params, False, False,
                         self._where_sql(where, index_scan)) + _plan_note(index_scan), self.settings(params, index_scan)

    def _where_sql(self, where: str | None, index_scan: bool) -> str:
        """``where`` (the predicate grammar over the attribute columns) as SQL, its values inlined as
        literals: the planner then sees the real selectivity (a bound value gets a generic estimate)."""
        if index_scan and self.kind == "exact":
            raise QueryError(f"{self.label} has no vector index to keep the planner on (index_scan=True)")
        if where is None:
            return ""
        if not self.attribute_types:
            raise QueryError(f"{self.label}: a WHERE predicate needs attribute columns; build with attributes=...")
        text, values = compile_predicate(where, self.attribute_types)
        parts = text.split("?")
        out = pgsql.SQL("").join(
            [pgsql.SQL(parts[0])] + [pgsql.SQL("{}{}").format(pgsql.Literal(v), pgsql.SQL(p))
                                     for v, p in zip(values, parts[1:])])
        return out.as_string(self._conn)

    def where_searcher(self, k: int, where: str, index_scan: bool = False,
                       **query_params: Any) -> Callable[[np.ndarray], list[int]]:
        """``f(row) -> ids`` of the top-``k`` rows matching ``where`` (e.g. ``"u < 0.01"``), filtered by the
        database's ``WHERE`` on the attribute columns. The planner chooses the path (the btree on the column
        and an exact sort, or the vector index then the filter) unless ``index_scan`` keeps it on the
        vector index; with the index, a query may come back short unless iterative scans are on."""
        self._check_k(k)
        params = self._params(query_params)
        self._check_rerank(k, params)
        cond = self._where_sql(where, index_scan)
        self._apply(params, index_scan)
        statement = query_sql(self._table, self.vtype, self.metric, self.dim, k, params, False, False, cond) + \
            _plan_note(index_scan)
        cur = self._conn.cursor(row_factory=scalar_row, binary=True)
        execute, fetchall = cur.execute, cur.fetchall

        def one(row: np.ndarray) -> list[int]:
            execute(statement, {"q": row[0]}, prepare=True)
            return fetchall()
        return one

    def _check_rerank(self, k: int, params: dict[str, Any]) -> None:
        if self.vtype == "bit" and params.get("rerank", RERANK_DEFAULT) < k:
            raise IndexSpecError(f"{self.label}: rerank={params.get('rerank', RERANK_DEFAULT)} is smaller than "
                                 f"k={k}; re-rank at least k candidates")

    # -- searching ------------------------------------------------------------------------------
    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        return ids.tolist()             # a Python list binds as an integer array (an ndarray would bind as vector)

    def _search(self, queries: np.ndarray, k: int, allowed: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        self._check_rerank(k, params)
        self._apply(params)
        sql = query_sql(self._table, self.vtype, self.metric, self.dim, k, params, True, allowed is not None)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf if self.metric == "l2" else -np.inf, dtype=np.float32)
        args: dict[str, Any] = {} if allowed is None else {"allowed": allowed}
        cur = self._conn.cursor(binary=True)
        for i, row in enumerate(queries):
            args["q"] = row
            cur.execute(sql, args, prepare=True)
            got = cur.fetchall()
            if got:
                a = np.asarray(got, dtype=np.float64)
                ids[i, :len(got)] = a[:, 0]
                dist[i, :len(got)] = {"cosine": 1.0 - a[:, 1], "ip": -a[:, 1], "l2": a[:, 1] ** 2}[self.metric]
        if self.vtype == "halfvec":          # rows come in half-precision order: best-first by the exact distance
            order = np.argsort(dist if self.metric == "l2" else -dist, axis=1, kind="stable")
            dist, ids = np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)
        return dist, ids

    def _searcher(self, k: int, params: dict[str, Any], allowed: Any | None) -> Callable[[np.ndarray], list[int]]:
        self._check_rerank(k, params)
        self._apply(params)
        sql = query_sql(self._table, self.vtype, self.metric, self.dim, k, params, False, allowed is not None)
        cur = self._conn.cursor(row_factory=scalar_row, binary=True)
        execute, fetchall = cur.execute, cur.fetchall
        if allowed is None:
            def one(row: np.ndarray) -> list[int]:
                execute(sql, {"q": row[0]}, prepare=True)
                return fetchall()
            return one
        args: dict[str, Any] = {"allowed": allowed}

        def filtered(row: np.ndarray) -> list[int]:
            args["q"] = row[0]
            execute(sql, args, prepare=True)
            return fetchall()
        return filtered

    # -- the rest of the interface ----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        raise DatabaseError(f"{self.label} lives in PostgreSQL table {self._table or '(not built)'}, not in a file: "
                            "it cannot be saved; rebuild it from the vectors")

    @classmethod
    def load(cls, path: str | Path) -> PgvectorIndex:
        raise DatabaseError(f"{path}: pgvector indexes are not saved to files (they live in the database); "
                            "rebuild one from the vectors")

    def build_report(self) -> dict[str, float]:
        """Load rows/s, seconds of COPY, VACUUM ANALYZE and CREATE INDEX, heap/table/index bytes on disk."""
        return {f"db_{k}": float(v) for k, v in self.build_stats.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def server_times_ms(self, queries: np.ndarray, k: int, warmup: int = 10, **query_params: Any) -> np.ndarray:
        """Server-side execution time (ms, planning excluded) of each query from ``EXPLAIN (ANALYZE, FORMAT
        JSON)`` (PostgreSQL docs, "EXPLAIN") on a connection of its own with the settings ``searcher``
        applies, after ``warmup`` untimed queries (a new backend's first statements fill its catalog
        caches). Per-node timing and buffer counting are off: they would add to the time measured."""
        q = self.prepare_queries(queries)
        sql, settings = self.statement(k, **query_params)
        explain = "EXPLAIN (ANALYZE, TIMING OFF, BUFFERS OFF, FORMAT JSON) " + sql
        with connect() as conn:
            for name, value in settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            for v in q[:warmup]:
                conn.execute(explain, {"q": v})
            return np.array([conn.execute(explain, {"q": v}).fetchone()[0][0]["Execution Time"] for v in q])

    def size_bytes(self) -> int:
        """On-disk size of the index (``pg_indexes_size``); for ``exact``, of the table it scans."""
        self._require_built()
        return self.build_stats["table_bytes" if self.kind == "exact" else "index_bytes"]

    def set_threads(self, n: int) -> None:
        self.threads = int(n)

    @property
    def ntotal(self) -> int:
        return self._n
