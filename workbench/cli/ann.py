"""`workbench ann`: benchmark vector indexes (recall vs QPS sweeps), `workbench ann-overhead` and
`workbench ann-spread`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.cli.args import checked_out, out_dir, positive_float, positive_int

if TYPE_CHECKING:
    from workbench.runners.ann import AnnResult

DATA_HELP = ("dataset name or BEIR folder (embedded through the cache), 'sentences' (the MiniLM sentence set of "
             "cranfield+cisi+medline), an ann-benchmarks .hdf5, an .npz (base, queries, optional neighbors), "
             "or synthetic:n=5000,dim=64,queries=200,clusters=50,seed=0,metric=cosine")
SPEC_HELP = ("faiss:<factory>[?param=v1,v2,...] or hnswlib:M=16,ef_construction=200[?ef=v1,v2,...]; "
             "e.g. faiss:HNSW32,Flat?efSearch=16,32,64 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ann``, ``ann-overhead`` and ``ann-spread``."""
    p = sub.add_parser("ann", help="recall/QPS sweep of vector indexes with Pareto plots",
                       description="Build each --index once, sweep its query parameters, write DIR/results.parquet, "
                                   "DIR/summary.json (best QPS at recall 0.90/0.95/0.99) and plots. "
                                   "Without --index: the default sweep over every family.")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--index", action="append", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--preset", choices=("default", "reference", "tour"), default=None,
                   help="default: every family (the sweep used without --index); reference: the issue's "
                        "reference configurations, compared with the quoted figures; tour: one build per "
                        "family with two or three query points (notebook 02)")
    p.add_argument("--k", type=positive_int, default=10)
    p.add_argument("--threads", type=positive_int, default=1, help="threads for one-query-at-a-time QPS (default 1)")
    p.add_argument("--runs", type=positive_int, default=5,
                   help="timed passes per point, interleaved across the points; QPS is their median with an "
                        "order-statistic interval (min..max below 6 passes; default 5)")
    p.add_argument("--budget", type=positive_float, default=10.0, metavar="SECONDS",
                   help="stop a point's timed passes once this much time is spent, after at least one (default 10)")
    p.add_argument("--out", required=True, type=out_dir, metavar="DIR")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--keep", type=keep_target, metavar="best@RECALL",
                   help="save the fastest point with recall >= RECALL (e.g. best@0.95) as a retrieval bundle on "
                        "the sweep's parent run, for `workbench register`")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="measure each build configuration as a task on a Ray cluster: auto (RAY_ADDRESS or a "
                        "running `ray start`), local (a one-node cluster in this process) or HOST:PORT")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_ann)

    o = sub.add_parser("ann-overhead", help="harness single-query QPS vs a bare library loop",
                       description="Single-thread QPS through the harness and through a bare loop calling the "
                                   "library directly, same queries, alternating passes; writes DIR/overhead.json.")
    o.add_argument("data", metavar="DATA", help=DATA_HELP)
    o.add_argument("--index", action="append", metavar="SPEC", help=SPEC_HELP + " (default: every family of "
                   "the default sweep at the middle value of its query parameters)")
    o.add_argument("--k", type=positive_int, default=10)
    o.add_argument("--threads", type=positive_int, default=1)
    o.add_argument("--runs", type=positive_int, default=10, help="alternating passes; the best of each side counts (default 10)")
    o.add_argument("--out", type=out_dir, metavar="DIR", help="default: <output dir>/ann-overhead")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.set_defaults(func=run_overhead)

    r = sub.add_parser("ann-spread", help="rerun a sweep N times: the spread of each point's median QPS",
                       description="Run the sweep --reruns times (each a fresh DIR/rerun-i/results.parquet), report "
                                   "per point the spread of the medians, (max - min) / median, and per recall target "
                                   "whether every pair of families the best-QPS table marks as different keeps its "
                                   "order in all reruns; writes DIR/spread.json and DIR/spread.png. Not tracked.")
    r.add_argument("data", metavar="DATA", help=DATA_HELP)
    r.add_argument("--index", action="append", metavar="SPEC", help=SPEC_HELP)
    r.add_argument("--preset", choices=("default", "reference", "tour"), default=None,
                   help="as for `workbench ann` (default without --index)")
    r.add_argument("--reruns", type=positive_int, default=3, help="how many times to run the sweep (default 3)")
    r.add_argument("--k", type=positive_int, default=10)
    r.add_argument("--threads", type=positive_int, default=1)
    r.add_argument("--runs", type=positive_int, default=5, help="timed passes per point in each rerun (default 5)")
    r.add_argument("--budget", type=positive_float, default=10.0, metavar="SECONDS",
                   help="a point's timed passes stop once this much time is spent (default 10)")
    r.add_argument("--out", required=True, type=out_dir, metavar="DIR")
    r.add_argument("--json", action="store_true", help="print spread.json's content")
    r.set_defaults(func=run_spread)


def keep_target(text: str) -> float:
    """``best@0.95`` -> 0.95 (argparse type)."""
    head, _, value = text.partition("@")
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if head != "best" or not 0 < target <= 1:
        raise argparse.ArgumentTypeError(f"expected best@RECALL with RECALL in (0, 1], e.g. best@0.95; got {text!r}")
    return target


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def run_ann(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.runners import ann
    from workbench.tracking.sink import NullSink

    sink = NullSink() if args.no_track else ann.tracking_sink(args.store)
    result = ann.run_ann(args.data, args.out, specs=args.index or (), preset=args.preset, k=args.k,
                         threads=args.threads, runs=args.runs, budget_s=args.budget, sink=sink,
                         progress=not args.json, keep=args.keep, ray=args.ray)
    lines = _lines(result)
    kept = result.summary.get("kept")
    run_id = getattr(sink, "parent_run_id", None)
    if kept is not None and kept["point"] is not None:
        lines.append(f"kept {kept['point']} (fastest at recall >= {kept['target']}: {kept['qps']:,.0f} QPS; rebuilt "
                     f"recall {kept['recall_rebuilt']:.4f}) in {kept['bundle']}")
    if run_id:
        lines.append(f"parent run: {run_id}" + (f"  (register it: workbench register {run_id} --name NAME)"
                                                 if kept and kept["point"] else ""))
    emit({**result.summary, "parent_run_id": run_id}, args.json, lines)
    if kept is not None and kept["point"] is None:
        print(f"error: --keep best@{kept['target']}: {kept['reason']}", file=sys.stderr)
        return 2
    return 0


def _lines(result: "AnnResult") -> list[str]:
    """The sweep as a table, the best-QPS-at-recall summary and the reference comparison, for a terminal."""
    data, df, summary = result.data, result.frame, result.summary
    lines = [f"{data.name}: {len(data.base):,} x {data.base.shape[1]} ({data.metric}), {len(data.queries):,} "
             f"queries, recall@{summary['k']}, QPS one query at a time on {summary['threads']} thread(s); batch "
             f"QPS on {summary['batch_threads']} threads", ""]
    cols = "{:<52} {:>7} {:>7} {:>10} {:>19} {:>10} {:>8} {:>8} {:>8}"
    lines.append(cols.format("point", "recall", "rec_ids", "qps", "qps interval", "batch_qps", "p99_ms", "build_s",
                             "B/vec"))
    for r in df.sort_values(["family", "index", "recall"]).to_dict("records"):
        interval = f"{_fmt(r.get('qps_lo'), ',.0f')}..{_fmt(r.get('qps_hi'), ',.0f')}"
        lines.append(cols.format(r["point"][:52], _fmt(r["recall"], ".4f"), _fmt(r["recall_ids"], ".4f"),
                                 _fmt(r["qps"], ",.0f"), interval, _fmt(r["batch_qps"], ",.0f"),
                                 _fmt(r["p99_ms"], ".3f"), _fmt(r["build_s"], ".1f"),
                                 _fmt(r["bytes_per_vector"], ".0f")))
    lines += ["", "best QPS at recall >= 0.90 / 0.95 / 0.99 (family: median QPS #rank, ≈ = interval overlaps "
                  "another family's: not distinguishable at this noise level)"]
    for fam, cells in summary["best_qps_at_recall"].items():
        lines.append(f"  {fam:<24} " + "  ".join(
            "-" if c is None else f"{c['qps']:,.0f} #{c['rank']}{' ≈' if c['tied_with'] else ''} "
                                  f"({c['point'].split('?')[-1]})" for c in cells.values()))
    if "reference" in summary:
        lines += ["", "reference (quoted in issue 3 vs measured here)"]
        for r in summary["reference"]:
            lines.append(f"  {r['point']:<42} recall {r['quoted_recall']} vs {_fmt(r['recall'], '.3f')}, "
                         f"QPS {_fmt(r['quoted_qps'], ',.0f')} vs {_fmt(r['qps'], ',.0f')}")
    lines += ["", f"wrote {summary['results']}, {Path(summary['results']).with_name('summary.json')}, "
                  + ", ".join(p.name for p in result.figures.values())]
    return lines


def run_overhead(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.config import output_dir
    from workbench.runners.ann import run_overhead as measure

    payload = measure(args.data, checked_out(args.out, lambda: output_dir() / "ann-overhead"), specs=args.index or (),
                      k=args.k, threads=args.threads, runs=args.runs, progress=not args.json)
    lines = [f"{payload['dataset']['name']}: {payload['n_queries']:,} queries one at a time, {args.threads} "
             f"thread(s), k={args.k}, best of {args.runs} alternating passes"]
    for r in payload["results"]:
        lines.append(f"  {r['point']:<44} harness {r['harness_qps']:>9,.0f} QPS   bare loop {r['bare_qps']:>9,.0f} QPS"
                     f"   ratio {r['ratio']:.3f}  {'within 3%' if r['within_3pct'] else 'OUTSIDE 3%'}   per-round "
                     f"ratio median {r['paired_ratio']:.3f} [{r['paired_ratio_lo']:.3f}, {r['paired_ratio_hi']:.3f}]")
    lines.append(f"wrote {payload['written']}")
    emit(payload, args.json, lines)
    return 0


def run_spread(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.runners.ann_spread import run_spread as rerun

    result = rerun(args.data, args.out, reruns=args.reruns, specs=args.index or (), preset=args.preset, k=args.k,
                   threads=args.threads, runs=args.runs, budget_s=args.budget, progress=not args.json)
    s = result.summary
    lines = [f"{result.data.name}: {s['reruns']} reruns, {args.runs} interleaved passes a point; spread = (max - min) "
             "/ median of the reruns' medians; interval = one run's interval width / its median (mean)", ""]
    cols = "{:<56} {:>7} {:>10} {:>10} {:>10} {:>8} {:>9}"
    lines.append(cols.format("point", "recall", "median", "min", "max", "spread", "interval"))
    for r in result.spread.sort_values(["family", "point"]).to_dict("records"):
        lines.append(cols.format(_fit(r["point"], 56), f"{r['recall']:.4f}", f"{r['qps_median']:,.0f}",
                                 f"{r['qps_min']:,.0f}", f"{r['qps_max']:,.0f}", f"{100 * r['rel_spread']:.1f}%",
                                 f"{100 * r['rel_interval']:.1f}%"))
    lines += ["", f"spread of the medians: median {100 * s['rel_spread']['median']:.1f}%, max "
                  f"{100 * s['rel_spread']['max']:.1f}%",
              f"rerun noise the best-QPS tables allow (intervals widened by): {100 * s['rerun_noise']['used']:.1f}%; "
              f"half the median spread here: {100 * s['rerun_noise']['measured']:.1f}%", "",
              "pairs of families the best-QPS table marks as different (in any rerun), per recall target:"]
    for t, c in s["ranking"].items():
        verdict = "same order in every rerun" if c["consistent"] else f"{len(c['inconsistent'])} pair(s) reordered"
        lines.append(f"  recall >= {t}: {c['pairs']} pair(s), {verdict}")
        for bad in c["inconsistent"]:
            order = ", ".join(str(f) for f in bad["faster_per_rerun"])
            lines.append(f"    {bad['pair'][0]} vs {bad['pair'][1]}: faster per rerun {order}")
    lines.append("grid time per rerun (builds included): " + ", ".join(f"{t:,.0f} s" for t in s["rerun_seconds"]))
    lines.append(f"wrote {Path(args.out) / 'spread.json'}, {result.figure}")
    emit(s, args.json, lines)
    return 0


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` characters: its head and its tail (where the query parameters are) around '…'."""
    if len(text) <= width:
        return text
    head = (width - 1) // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]
