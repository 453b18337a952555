"""Updates after launch: delete a share of the rows of a pgvector table, insert as many new ones, and
measure recall and latency before ``VACUUM``, after it and after ``REINDEX`` (PostgreSQL docs, "Routine
Vacuuming"; pgvector README: HNSW and IVFFlat take inserts and deletes, vacuuming HNSW is slow, IVFFlat's
lists are not re-trained until the index is rebuilt).

The vector set is split once (``seed``): ``n0 = n / (1 + fraction)`` rows are built into the index, the
other ``fraction * n0`` are the new rows. Stages: ``built`` (fresh index), ``updated`` (the deletes and
inserts done, the deleted tuples still in the heap and the index), ``vacuumed`` (``VACUUM``: dead tuples
removed from heap and index), ``reindexed`` (``REINDEX``: the index built anew from the current rows).
Autovacuum is off on the table, so nothing happens between the stages but what they say. Recall at each
stage is against the exact top-k of the rows live at that stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench.bench.filtered import params_text
from workbench.bench.timing import time_single_queries
from workbench.errors import IndexSpecError, QueryError
from workbench.index.exact import ExactIndex
from workbench.index.pgvector import PgvectorIndex
from workbench.index.pgvector_sql import copy_in, copy_rows
from workbench.index.spec import IndexSpec
from workbench.services.postgres import connect
from workbench.vectors.recall import recall_ties

STAGES = ("built", "updated", "vacuumed", "reindexed")


def split_for_updates(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(initial rows, new rows, deleted ids)``: positions in the vector set for the first two, ids of the
    built table (positions in ``initial``) for the third."""
    if not 0 < fraction < 1:
        raise QueryError(f"fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n_new = max(1, round(n * fraction / (1 + fraction)))
    perm = rng.permutation(n)
    initial, new = np.sort(perm[n_new:]), np.sort(perm[:n_new])
    deleted = np.sort(rng.choice(len(initial), n_new, replace=False))
    return initial, new, deleted


def _sizes(conn: Any, table: str) -> dict[str, int]:
    t, i = conn.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)", (table, table)).fetchone()
    return {"table_bytes": int(t), "index_bytes": int(i)}


def updates_experiment(base: np.ndarray, queries: np.ndarray, metric: str, specs: Sequence[IndexSpec], *,
                       k: int = 10, fraction: float = 0.1, seed: int = 0, runs: int = 3, warmup: int = 10,
                       on_point: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """One row per (spec, query point, stage): recall, short results, latency, sizes and the seconds the
    stage's operation took (see the module docstring)."""
    bad = [s.text for s in specs if s.library != "pgvector" or s.build.get("kind") == "exact"]
    if bad:
        raise IndexSpecError(f"the updates experiment takes pgvector hnsw/ivfflat specs, got {', '.join(bad)}")
    initial, new, deleted = split_for_updates(len(base), fraction, seed)
    n0 = len(initial)
    exact = ExactIndex(metric)
    exact.build(np.vstack([base[initial], base[new]]))       # ids: the table's (initial 0..n0-1, then new)
    q = exact.prepare_queries(queries)
    rows_in = [q[i:i + 1] for i in range(len(q))]
    live = {"built": np.arange(n0), "updated": np.setdiff1d(np.arange(n0 + len(new)), deleted)}
    truth = {name: exact.search(q, k, allowed=ids) for name, ids in live.items()}
    out = []
    for spec in specs:
        index = PgvectorIndex(metric=metric, **spec.build)
        index.build(exact.vectors[:n0])
        conn = connect()
        try:
            conn.execute(f"ALTER TABLE {index.table} SET (autovacuum_enabled = off)")
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)",
                         (str(spec.build["maintenance_work_mem"]),))
            for stage in STAGES:
                t0 = time.perf_counter()
                if stage == "updated":
                    conn.execute(f"DELETE FROM {index.table} WHERE id = ANY(%s)", (deleted.tolist(),))
                    copy_in(conn, index.table, copy_rows(exact.vectors[n0:], ids=np.arange(n0, n0 + len(new))))
                elif stage == "vacuumed":
                    conn.execute(f"VACUUM {index.table}")
                elif stage == "reindexed":
                    conn.execute(f"REINDEX TABLE {index.table}")
                stage_s = time.perf_counter() - t0 if stage != "built" else index.build_stats["index_build_s"]
                which = "built" if stage == "built" else "updated"
                true_d = truth[which][0]
                sizes = _sizes(conn, index.table)
                for point in spec.points():
                    walls, seconds, results = time_single_queries(index.searcher(k, **point), rows_in, runs,
                                                                  min(warmup, len(q)))
                    ids = np.full((len(q), k), -1, dtype=np.int64)
                    for i, r in enumerate(results):
                        ids[i, :len(r)] = r
                    n_results = (ids >= 0).sum(axis=1)
                    row = {"index": spec.label, "family": index.family, "query_params": params_text(point),
                           "stage": stage, "stage_s": float(stage_s), "k": k, "n_queries": len(q),
                           "n_live": int(live[which].size), "n_deleted": int(deleted.size if which == "updated" else 0),
                           "n_inserted": int(len(new) if which == "updated" else 0),
                           "recall": float(recall_ties(exact.vectors, q, ids, true_d, k, metric, live[which]).mean()),
                           "frac_short": float((n_results < k).mean()), "mean_results": float(n_results.mean()),
                           "p50_ms": float(np.percentile(seconds, 50) * 1e3),
                           "p95_ms": float(np.percentile(seconds, 95) * 1e3), "qps": float(len(q) / min(walls)),
                           **sizes}
                    out.append(row)
                    if on_point is not None:
                        on_point(row)
        finally:
            conn.close()
            index.close()
    return pd.DataFrame(out)
