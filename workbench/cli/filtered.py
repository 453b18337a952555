"""`workbench filtered`: filtered vector search, pre-filter vs post-filter vs exact, across selectivity."""

from __future__ import annotations

import argparse

from workbench.cli.args import fraction_list, non_negative_int, out_dir, positive_int, positive_int_list


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``workbench filtered``."""
    p = sub.add_parser(
        "filtered", help="filtered search: pre-filter, post-filter and exact subset across selectivity",
        description="Attach synthetic attributes (category, year, uniform u) to each vector in DuckDB, select "
                    "ids with 'u < s' for each selectivity s, and measure recall@k against the exact filtered "
                    "top-k, short results and single-query latency for each strategy and index. Writes "
                    "DIR/filtered.parquet, DIR/filtered_recall.png, DIR/filtered_latency.png, DIR/summary.json.")
    p.add_argument("data", metavar="DATA",
                   help="as for `workbench ann`: 'sentences', 'synthetic:n=..,dim=..', a vector file "
                        "(.hdf5, .npz, .fvecs), or a dataset name / BEIR folder (embedded through the cache)")
    p.add_argument("--out", required=True, type=out_dir, metavar="DIR", help="output folder")
    p.add_argument("--index", action="append", dest="specs", metavar="SPEC",
                   help="index SPEC as in `workbench ann` (repeatable); default: Flat, faiss HNSW32, "
                        "faiss IVF, hnswlib M=16. The exact subset (the ground truth) is always measured")
    p.add_argument("--k", type=positive_int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--selectivity", type=fraction_list, default=None, metavar="S1,S2,...",
                   help="fractions of ids allowed (default 0.001,0.003,0.01,0.03,0.1,0.3,0.5)")
    p.add_argument("--overfetch", type=positive_int_list, default=None, metavar="F1,F2,...",
                   help="post-filter over-fetch factors (default 1,2,10)")
    p.add_argument("--queries", type=positive_int, default=200, metavar="N", help="first N queries (default 200)")
    p.add_argument("--threads", type=positive_int, default=1, help="search threads (default 1)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed passes over the queries; the best counts (default 3)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic attributes")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    # imported here so that `workbench --help` does not load faiss, DuckDB and the tracking store
    from workbench.bench.filtered import DEFAULT_OVERFETCH, DEFAULT_SELECTIVITIES
    from workbench.cli import emit
    from workbench.runners.filtered import run_filtered, tracking_sink
    from workbench.tracking.sink import NullSink

    sink = NullSink() if args.no_track else tracking_sink(args.store)
    result = run_filtered(args.data, args.out, n_queries=args.queries, specs=args.specs or (), k=args.k,
                          selectivities=args.selectivity or DEFAULT_SELECTIVITIES,
                          overfetch=args.overfetch or DEFAULT_OVERFETCH, threads=args.threads, runs=args.runs,
                          seed=args.seed, sink=sink)
    summary = result.summary
    cols = ["index", "strategy", "overfetch", "selectivity", "n_allowed", "recall", "frac_short", "p50_ms",
            "p95_ms", "qps"]
    lines = [f"filtered search on {summary['dataset']['name']}: {summary['n_base']} vectors, "
             f"{summary['n_queries']} queries, k={args.k}, {args.threads} thread(s), one query at a time",
             result.frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"),
             f"wrote {', '.join(summary['files'])}, {args.out / 'summary.json'}"]
    emit(summary, args.json, lines)
    return 0
