"""Concurrent clients, as VectorDBBench measures them (Zilliz, https://github.com/zilliztech/VectorDBBench):
QPS and p50/p99 latency with 1, 2, 4, 8 clients at one operating point.

Each client is a thread with a search function of its own: for pgvector a connection of its own (the
statement prepared on it, the point's settings applied: ``bench.pg_overhead.bare_pg_search``), so the
server runs one backend per client; for an in-process library the index's searcher, shared by the
threads (one library thread per call). Every client opens before the start (connections are not timed),
runs a few untimed queries, waits at a barrier, then sends a fixed number of queries one after another
(starting at its own offset in the query set, wrapping around) until done or the time limit is spent. QPS = queries
completed by all clients / wall time from the barrier to the last client's end; latency percentiles over
every completed query. psycopg releases the GIL while it waits for the server, so threads measure the
database; for in-process libraries the Python part of each call runs under the GIL, which is what a
threaded Python service gets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.bench.harness import BenchSet, point_label
from workbench.bench.pg_overhead import bare_pg_search
from workbench.errors import QueryError
from workbench.index.base import VectorIndex
from workbench.index.pgvector import PgvectorIndex
from workbench.index.spec import IndexSpec
from workbench.vectors.recall import recall_ties

DEFAULT_CLIENTS = (1, 2, 4, 8)
#: a client's search of query number i, and how to close it
Client = tuple[Callable[[int], Any], Callable[[], None]]


@dataclass
class OperatingPoint:
    """The query parameters a concurrency run uses, and the single-client recall they reach."""

    spec: IndexSpec
    query_params: dict[str, Any]
    recall: float
    reached: bool

    @property
    def label(self) -> str:
        return point_label(self.spec, self.query_params)


def point_recall(index: VectorIndex, data: BenchSet, k: int, query_params: dict[str, Any]) -> float:
    """Mean tie-aware recall@k of ``index`` on ``data``'s queries under ``query_params``."""
    ids = index.search(data.queries, k, **query_params)[1]
    return float(recall_ties(data.base, data.queries, ids, data.gt_distances, k, data.metric).mean())


def choose_point(index: VectorIndex, spec: IndexSpec, data: BenchSet, k: int, target: float) -> OperatingPoint:
    """The first point of ``spec``'s sweep (listed cheapest first) whose recall@k reaches ``target``, else
    the point with the highest recall (``reached`` False)."""
    best: OperatingPoint | None = None
    for qp in spec.points():
        rec = point_recall(index, data, k, qp)
        if rec >= target:
            return OperatingPoint(spec, qp, rec, True)
        if best is None or rec > best.recall:
            best = OperatingPoint(spec, qp, rec, False)
    return best


def client_factory(index: VectorIndex, queries: np.ndarray, k: int,
                   query_params: dict[str, Any]) -> Callable[[], Client]:
    """``open() -> (search(i), close)`` for one client of ``index`` at ``query_params``."""
    q = index.prepare_queries(queries)
    if isinstance(index, PgvectorIndex):
        vectors = list(q)

        def open_pg() -> Client:
            search, conn = bare_pg_search(index, k, query_params)
            return (lambda i: search(vectors[i])), conn.close
        return open_pg
    index.set_threads(1)
    search = index.searcher(k, **query_params)
    rows = [q[i:i + 1] for i in range(len(q))]

    def open_shared() -> Client:
        return (lambda i: search(rows[i])), (lambda: None)
    return open_shared


def run_clients(open_client: Callable[[], Client], n_queries: int, clients: int, per_client: int,
                time_limit_s: float = 30.0, warmup: int = 5) -> dict[str, float]:
    """Run ``clients`` threads of ``per_client`` queries each (stopping at ``time_limit_s``); QPS and
    latency percentiles (see the module docstring)."""
    if clients < 1 or per_client < 1:
        raise QueryError(f"clients and queries per client must be positive, got {clients} and {per_client}")
    opened = [open_client() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    ends = [0.0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    t0 = [0.0]

    def work(c: int) -> None:
        search, _ = opened[c]
        offset = c * n_queries // clients      # clients start spread over the query set
        try:
            for i in range(warmup):
                search((offset + i) % n_queries)
        except Exception as exc:  # noqa: BLE001  (re-raised after the join: a thread cannot raise into the caller)
            errors.append(exc)
        start.wait()
        now, mine = time.perf_counter, latencies[c]
        try:
            for i in range(per_client):
                a = now()
                search((offset + i) % n_queries)
                b = now()
                mine.append(b - a)
                if b - t0[0] > time_limit_s:
                    break
        except Exception as exc:  # noqa: BLE001  (re-raised after the join)
            errors.append(exc)
        ends[c] = now()

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    t0[0] = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    for _, close in opened:
        close()
    if errors:
        raise errors[0]
    lat = np.concatenate([np.asarray(x) for x in latencies])
    wall = max(ends) - t0[0]
    return {"clients": clients, "queries": int(lat.size), "wall_s": wall, "qps": lat.size / wall,
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "mean_ms": float(lat.mean() * 1e3), "time_limited": bool(lat.size < clients * per_client)}


def concurrency_sweep(open_client: Callable[[], Client], n_queries: int, clients: Sequence[int] = DEFAULT_CLIENTS,
                      per_client: int = 1000, time_limit_s: float = 30.0) -> list[dict[str, float]]:
    """``run_clients`` for each client count, in order."""
    return [run_clients(open_client, n_queries, c, per_client, time_limit_s) for c in clients]
