"""`workbench db-filtered | concurrency | tiered | updates`: the database experiments (issue 10)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from workbench.cli.args import fraction_list, non_negative_int, out_dir, positive_float, positive_int, positive_int_list

DATA_HELP = ("as for `workbench ann`: 'sentences', 'synthetic:n=..,dim=..', a vector file (.hdf5, .npz, .fvecs), "
             "or a dataset name / BEIR folder")


def _recall(text: str) -> float:
    """A recall target in [0, 1] (0: take the first swept point as given)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a recall in [0, 1], got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a recall in [0, 1], got {text!r}")
    return value


def _fraction(text: str) -> float:
    """A share of the rows in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:               # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def _common(p: argparse.ArgumentParser, queries: int | None) -> None:
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", required=True, type=out_dir, metavar="DIR", help="output folder")
    p.add_argument("--k", type=positive_int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--queries", type=positive_int, default=queries, metavar="N",
                   help=f"first N queries (default {queries or 'all'})")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``db-filtered``, ``concurrency``, ``tiered`` and ``updates``."""
    p = sub.add_parser("db-filtered", help="filtered search inside PostgreSQL/LanceDB: iterative scans, under-return",
                       description="Loads synthetic attributes (u uniform: 'u < s' selects s) into the pgvector table "
                                   "with a btree index and sweeps selectivity: HNSW iterative scan off / strict_order / "
                                   "relaxed_order, IVFFlat off / relaxed_order, the planner's exact path, LanceDB pre- "
                                   "vs post-filter, beside in-process pre-filtering. Writes DIR/db_filtered.*")
    _common(p, 200)
    p.add_argument("--index", action="append", dest="specs", metavar="SPEC",
                   help="pgvector or lancedb SPEC (repeatable; default: HNSW ef_search=40, IVFFlat, exact, IVF_PQ)")
    p.add_argument("--inprocess", action="append", metavar="SPEC",
                   help="in-process SPEC pre-filtered beside them (repeatable; default hnswlib and faiss HNSW)")
    p.add_argument("--selectivity", type=fraction_list, default=None, metavar="S1,S2,...",
                   help="fractions allowed (default 0.001,0.003,0.01,0.03,0.1,0.3,0.5)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed passes; the best counts (default 3)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic attributes")
    p.set_defaults(func=handle_filtered)

    c = sub.add_parser("concurrency", help="QPS and p50/p99 latency with 1, 2, 4, 8 concurrent clients",
                       description="Builds each --index, picks the first point of its sweep reaching --recall, then "
                                   "runs that many client threads (pgvector: one connection each), a fixed number of "
                                   "queries per client within a time limit. Writes DIR/concurrency.*")
    _common(c, None)
    c.add_argument("--index", action="append", dest="specs", required=True, metavar="SPEC",
                   help="SPEC as in `workbench ann`, its sweep listed cheapest first (repeatable)")
    c.add_argument("--clients", type=positive_int_list, default=[1, 2, 4, 8], metavar="C1,C2,...",
                   help="client counts (default 1,2,4,8)")
    c.add_argument("--recall", type=_recall, default=0.95,
                   help="recall@k the operating point must reach (default 0.95; 0 takes the first point)")
    c.add_argument("--per-client", type=positive_int, default=1000, metavar="N", help="queries per client (default 1000)")
    c.add_argument("--time-limit", type=positive_float, default=30.0, metavar="SECONDS",
                   help="a client stops after this long (default 30)")
    c.set_defaults(func=handle_concurrency)

    t = sub.add_parser("tiered", help="quarterly partitions + archive (HNSW each) vs one big index: recall, latency",
                       description="Partitions a pgvector table by created_at into quarterly partitions and an archive, "
                                   "each with its own HNSW index; measures queries over recent data (partition pruning, "
                                   "checked with EXPLAIN) and over everything, against one big index. Writes DIR/tiered.*")
    _common(t, 200)
    t.add_argument("--quarters", type=positive_int, default=4, help="recent quarterly partitions (default 4)")
    t.add_argument("--archive-quarters", type=positive_int, default=8, help="quarters of data in the archive (default 8)")
    t.add_argument("--recent", type=positive_int, default=1, help="quarters a recent query covers (default 1)")
    t.add_argument("--ef-search", type=positive_int, default=40, help="hnsw.ef_search (default 40)")
    t.add_argument("--runs", type=positive_int, default=3, help="timed passes; the best counts (default 3)")
    t.add_argument("--seed", type=non_negative_int, default=0)
    t.set_defaults(func=handle_tiered)

    u = sub.add_parser("updates", help="delete 10%% and insert as many: recall/latency before/after VACUUM, REINDEX",
                       description="For pgvector HNSW and IVFFlat: build, delete a share of the rows and insert as many "
                                   "new ones, then measure before VACUUM, after VACUUM and after REINDEX (recall "
                                   "against exact on the live rows). Writes DIR/updates.*")
    _common(u, 200)
    u.add_argument("--index", action="append", dest="specs", metavar="SPEC",
                   help="pgvector hnsw/ivfflat SPEC (repeatable; default HNSW ef_search=40 and IVFFlat)")
    u.add_argument("--fraction", type=_fraction, default=0.1, help="share of the rows deleted and inserted (default 0.1)")
    u.add_argument("--runs", type=positive_int, default=3, help="timed passes; the best counts (default 3)")
    u.add_argument("--seed", type=non_negative_int, default=0)
    u.set_defaults(func=handle_updates)


def _sink(args: argparse.Namespace, kind: str) -> Any:
    from workbench.runners.db import tracking_sink
    from workbench.tracking.sink import NullSink

    return NullSink() if args.no_track else tracking_sink(args.store, kind)


def _table(frame: Any, cols: list[str]) -> str:
    return frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def handle_filtered(args: argparse.Namespace) -> int:
    from workbench.bench.filtered import DEFAULT_SELECTIVITIES
    from workbench.cli import emit
    from workbench.runners.db import DEFAULT_INPROCESS, run_pg_filtered

    r = run_pg_filtered(args.data, args.out, specs=args.specs or (), inprocess=args.inprocess or DEFAULT_INPROCESS,
                        n_queries=args.queries, k=args.k, selectivities=args.selectivity or DEFAULT_SELECTIVITIES,
                        runs=args.runs, seed=args.seed, sink=_sink(args, "db-filtered"), progress=not args.json)
    emit(r.summary, args.json, [_table(r.frame, ["curve", "selectivity", "recall", "frac_short", "p50_ms", "qps", "plan"]),
                                f"wrote {', '.join(r.summary['files'])}"])
    return 0


def handle_concurrency(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.runners.db import run_concurrency

    r = run_concurrency(args.data, args.out, specs=args.specs, clients=args.clients, target_recall=args.recall or None,
                        per_client=args.per_client, time_limit_s=args.time_limit, k=args.k, n_queries=args.queries,
                        sink=_sink(args, "concurrency"), progress=not args.json)
    emit(r.summary, args.json, [_table(r.frame, ["point", "recall", "clients", "qps", "p50_ms", "p99_ms", "load_1m"]),
                                f"wrote {', '.join(r.summary['files'])}"])
    return 0


def handle_tiered(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.runners.db import run_tiered

    r = run_tiered(args.data, args.out, n_queries=args.queries, k=args.k, n_quarters=args.quarters,
                   archive_quarters=args.archive_quarters, recent_quarters=args.recent, ef_search=args.ef_search,
                   runs=args.runs, seed=args.seed, sink=_sink(args, "tiered"), progress=not args.json)
    emit(r.summary, args.json, [_table(r.frame, ["layout", "scope", "iterative_scan", "n_in_scope", "scanned", "recall",
                                                 "frac_short", "p50_ms", "qps"]),
                                f"wrote {', '.join(r.summary['files'])}"])
    return 0


def handle_updates(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.runners.db import run_updates

    r = run_updates(args.data, args.out, specs=args.specs or (), fraction=args.fraction, n_queries=args.queries,
                    k=args.k, runs=args.runs, seed=args.seed, sink=_sink(args, "updates"), progress=not args.json)
    emit(r.summary, args.json, [_table(r.frame, ["index", "query_params", "stage", "stage_s", "recall", "p50_ms", "qps",
                                                 "index_bytes"]),
                                f"wrote {', '.join(r.summary['files'])}"])
    return 0
