"""`workbench ann`: benchmark vector indexes (recall vs QPS sweeps) and `workbench ann-overhead`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DATA_HELP = ("dataset name or BEIR folder (embedded through the cache), 'sentences' (the MiniLM sentence set of "
             "cranfield+cisi+medline), an ann-benchmarks .hdf5, an .npz (base, queries, optional neighbors), "
             "or synthetic:n=5000,dim=64,queries=200,clusters=50,seed=0,metric=cosine")
SPEC_HELP = ("faiss:<factory>[?param=v1,v2,...] or hnswlib:M=16,ef_construction=200[?ef=v1,v2,...]; "
             "e.g. faiss:HNSW32,Flat?efSearch=16,32,64 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ann`` and ``ann-overhead``."""
    p = sub.add_parser("ann", help="recall/QPS sweep of vector indexes with Pareto plots",
                       description="Build each --index once, sweep its query parameters, write DIR/results.parquet, "
                                   "DIR/summary.json (best QPS at recall 0.90/0.95/0.99) and plots. "
                                   "Without --index: the default sweep over every family.")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--index", action="append", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--preset", choices=("default", "reference"), default=None,
                   help="default: every family (the sweep used without --index); reference: the issue's "
                        "reference configurations, compared with the quoted figures")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="threads for one-query-at-a-time QPS (default 1)")
    p.add_argument("--runs", type=int, default=3, help="timed passes per point; the best counts (default 3)")
    p.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                   help="stop a point's timed passes once this much time is spent, after at least one (default 10)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ann)

    o = sub.add_parser("ann-overhead", help="harness single-query QPS vs a bare library loop",
                       description="Single-thread QPS through the harness and through a bare loop calling the "
                                   "library directly, same queries, alternating passes; writes DIR/overhead.json.")
    o.add_argument("data", metavar="DATA", help=DATA_HELP)
    o.add_argument("--index", action="append", metavar="SPEC", help=SPEC_HELP + " (default: the HNSW reference "
                   "points of both libraries)")
    o.add_argument("--k", type=int, default=10)
    o.add_argument("--threads", type=int, default=1)
    o.add_argument("--runs", type=int, default=10, help="alternating passes; the best of each side counts (default 10)")
    o.add_argument("--out", type=Path, metavar="DIR", help="default: <output dir>/ann-overhead")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=run_overhead)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def run_ann(args: argparse.Namespace) -> int:
    from workbench.bench.data import load_bench_data
    from workbench.bench.harness import run_sweep
    from workbench.bench.pareto import summary_table
    from workbench.bench.plots import plot_build_size, plot_recall_qps
    from workbench.bench.reference import REFERENCE_FIGURES, default_specs, reference_specs
    from workbench.bench.sinks import CollectingSink, TrackingSink
    from workbench.index.spec import parse_spec
    from workbench.io import atomic_write_json

    specs = [parse_spec(s) for s in args.index or []]     # bad SPECs fail before any data is loaded
    data = load_bench_data(args.data, progress=not args.json)
    if args.preset == "reference":
        specs += reference_specs()
    elif args.preset == "default" or not specs:
        specs += default_specs(len(data.base), data.base.shape[1])
    sink = CollectingSink() if args.no_track else TrackingSink()
    df = run_sweep(data, specs, k=args.k, threads=args.threads, out_dir=args.out, runs=args.runs,
                   sink=sink, progress=not args.json, budget_s=args.budget)
    df = df[df["dataset_digest"] == data.digest]            # a resumed file may hold other data sets' rows
    title = f"{data.name}"
    plots = [plot_recall_qps(df, args.out / "recall_qps.png"),
             plot_recall_qps(df, args.out / "recall_batch_qps.png", y="batch_qps",
                             title=f"Recall vs batch QPS (all {df['batch_threads'].iloc[0]} threads, one call) — "
                                   f"{title}, recall@{args.k}"),
             plot_build_size(df, args.out / "build_size.png")]
    summary: dict[str, Any] = {
        "dataset": {**data.dataset_info, "n_base": len(data.base), "n_queries": len(data.queries),
                    "dim": int(data.base.shape[1]), "metric": data.metric},
        "k": args.k, "threads": args.threads, "n_points": len(df),
        "best_qps_at_recall": summary_table(df),
        "results": str(args.out / "results.parquet"), "plots": [str(p) for p in plots],
    }
    lines = [f"{data.name}: {len(data.base):,} x {data.base.shape[1]} ({data.metric}), {len(data.queries):,} queries, "
             f"recall@{args.k}, QPS one query at a time on {args.threads} thread(s); batch QPS on "
             f"{df['batch_threads'].iloc[0]} threads", ""]
    cols = "{:<52} {:>7} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8}"
    lines.append(cols.format("point", "recall", "rec_ids", "qps", "batch_qps", "p99_ms", "build_s", "B/vec"))
    for r in df.sort_values(["family", "index", "recall"]).to_dict("records"):
        lines.append(cols.format(r["point"][:52], _fmt(r["recall"], ".4f"), _fmt(r["recall_ids"], ".4f"),
                                 _fmt(r["qps"], ",.0f"), _fmt(r["batch_qps"], ",.0f"), _fmt(r["p99_ms"], ".3f"),
                                 _fmt(r["build_s"], ".1f"), _fmt(r["bytes_per_vector"], ".0f")))
    lines += ["", "best QPS at recall >= 0.90 / 0.95 / 0.99 (family: point)"]
    for fam, cells in summary["best_qps_at_recall"].items():
        lines.append(f"  {fam:<24} " + "  ".join(
            "-" if c is None else f"{c['qps']:,.0f} ({c['point'].split('?')[-1]})" for c in cells.values()))
    if args.preset == "reference":
        ref = []
        for point, (rec, qps) in REFERENCE_FIGURES.items():
            row = df[df["point"] == point]
            got = row.iloc[0] if len(row) else None
            ref.append({"point": point, "quoted_recall": rec, "quoted_qps": qps,
                        "recall": None if got is None else float(got["recall"]),
                        "qps": None if got is None else float(got["qps"])})
        summary["reference"] = ref
        lines += ["", "reference (quoted in issue 3 vs measured here)"]
        for r in ref:
            lines.append(f"  {r['point']:<42} recall {r['quoted_recall']} vs {_fmt(r['recall'], '.3f')}, "
                         f"QPS {_fmt(r['quoted_qps'], ',.0f')} vs {_fmt(r['qps'], ',.0f')}")
    atomic_write_json(args.out / "summary.json", summary)
    if isinstance(sink, TrackingSink):
        sink.attach(f"{data.name} report", [args.out / "results.parquet", args.out / "summary.json", *plots],
                    metrics={"n_points": len(df)})
    lines += ["", f"wrote {args.out / 'results.parquet'}, {args.out / 'summary.json'}, "
                  + ", ".join(p.name for p in plots)]
    from workbench.cli import emit

    emit(summary, args.json, lines)
    return 0


def run_overhead(args: argparse.Namespace) -> int:
    from workbench.bench.data import load_bench_data
    from workbench.bench.overhead import measure_overhead
    from workbench.cli import emit
    from workbench.config import output_dir
    from workbench.index.spec import parse_spec
    from workbench.io import atomic_write_json

    texts = args.index or ["hnswlib:M=16,ef_construction=200?ef=32", "faiss:HNSW32,Flat?efSearch=32"]
    specs = [parse_spec(s) for s in texts]
    data = load_bench_data(args.data, progress=not args.json)
    rows = [r for spec in specs for r in measure_overhead(data, spec, k=args.k, threads=args.threads, runs=args.runs)]
    out = args.out or output_dir() / "ann-overhead"
    payload = {"dataset": data.dataset_info, "n_base": len(data.base), "results": rows}
    atomic_write_json(out / "overhead.json", payload)
    lines = [f"{data.name}: {len(data.queries):,} queries one at a time, {args.threads} thread(s), k={args.k}, "
             f"best of {args.runs} alternating passes"]
    for r in rows:
        lines.append(f"  {r['point']:<44} harness {r['harness_qps']:>9,.0f} QPS   bare loop {r['bare_qps']:>9,.0f} QPS"
                     f"   ratio {r['ratio']:.3f}  {'within 5%' if r['within_5pct'] else 'OUTSIDE 5%'}")
    lines.append(f"wrote {out / 'overhead.json'}")
    emit(payload, args.json, lines)
    return 0
