"""`workbench tune`: the fastest index configuration at a recall target (an Optuna study), optionally
compared side by side with every library's default (``--compare``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from workbench.cli.ann import DATA_HELP
from workbench.cli.args import out_dir, positive_int

if TYPE_CHECKING:
    from workbench.runners.tune import TuneResult


def _number(text: str) -> float:
    """A number; its range is checked by the tuner (one ``error:`` line names it)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tune``."""
    p = sub.add_parser("tune", help="search build and query parameters across families for the fastest "
                                    "configuration at a recall target",
                       description="An Optuna TPE study over faiss HNSW, hnswlib, usearch, ScaNN and faiss IVF "
                                   "fast-scan PQ (memory and build time as constraints): each trial builds one "
                                   "configuration, sweeps its query parameter up to the recall target (pruned when "
                                   "its maximum effort misses it) and scores its QPS there. Resumable: a rerun "
                                   "with the same DIR and question continues the study. Writes DIR/results.parquet, "
                                   "trials.csv, frontier.csv/.png and tune.json.")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--recall", type=_number, default=0.95, help="recall@k target in (0, 1] (default 0.95)")
    p.add_argument("--memory-mb", type=_number, metavar="M", help="limit on the index size, MiB")
    p.add_argument("--build-s", type=_number, metavar="S", help="limit on the build time, seconds")
    p.add_argument("--budget", default="10m", help="tuning time: 10m, 90s, 1h30m or seconds (default 10m; 0 runs no "
                                                  "new trial, e.g. to compare a finished study)")
    p.add_argument("--families", help="comma-separated: faiss-hnsw, hnswlib, usearch, scann, faiss-ivf-fs (default all)")
    p.add_argument("--k", type=positive_int, default=10)
    p.add_argument("--threads", type=positive_int, default=1, help="threads for one-query-at-a-time QPS (default 1)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed passes per point; the best counts (default 3)")
    p.add_argument("--trials", type=positive_int, help="stop after this many trials (default: the budget decides)")
    p.add_argument("--seed", type=positive_int, default=1)
    p.add_argument("--compare", action="store_true",
                   help="then measure every library's default and the recommendation side by side (interleaved "
                        "rounds) and time the exhaustive default grid: DIR/compare.json, compare.png, grid/")
    p.add_argument("--rounds", type=positive_int, default=7, help="interleaved rounds of --compare (default 7)")
    p.add_argument("--no-grid", action="store_true", help="with --compare: skip the default grid")
    p.add_argument("--out", required=True, type=out_dir, metavar="DIR")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from workbench.bench.tune import TuneSettings
    from workbench.cli import emit
    from workbench.runners import tune
    from workbench.tracking.sink import NullSink

    settings = TuneSettings(recall=args.recall, memory_mb=args.memory_mb, build_s=args.build_s, budget_s=args.budget,
                            families=args.families, k=args.k, threads=args.threads, runs=args.runs,
                            seed=args.seed, max_trials=args.trials)
    sink = NullSink() if args.no_track else tune.tracking_sink(args.store)
    result = tune.run_tune(args.data, args.out, settings, sink=sink, progress=not args.json,
                           with_compare=args.compare, rounds=args.rounds, grid=not args.no_grid)
    payload = {**result.summary, "comparison": result.comparison,
               "parent_run_id": getattr(sink, "parent_run_id", None)}
    emit(payload, args.json, _lines(result))
    return 0


def _lines(result: "TuneResult") -> list[str]:
    s, rec = result.summary, result.recommended
    lines = [f"{s['dataset']['name']}: {s['dataset']['n_base']:,} x {s['dataset']['dim']}, recall@{s['k']} >= "
             f"{s['target']}, QPS one query at a time on {s['threads']} thread(s); load {s['load']}",
             f"study {s['study']}: {s['trials']} trials ({s['pruned']} pruned), {s['wall_s']:.0f} s this run, "
             f"{s['study_trials_s']:.0f} s of trials in all; {s['n_points']} points measured"]
    if rec is None:
        lines.append("no configuration reached the target within the limits")
    else:
        lines.append(f"recommended: {rec['spec']}  recall {rec['recall']:.4f}  {rec['qps']:,.0f} QPS  "
                     f"(build {rec['build_s']:.1f} s, {rec['size_mb']:.1f} MiB)")
    lines += ["", "frontier (all measured points):", f"  {'point':<70} {'recall':>7} {'qps':>9}"]
    for r in s["frontier"]:
        lines.append(f"  {r['point'][:70]:<70} {r['recall']:>7.4f} {r['qps']:>9,.0f}")
    c = result.comparison
    if c:
        lines += ["", f"side by side, {c['rounds']} interleaved rounds (load {c['load_before']} -> {c['load_after']}):",
                  f"  {'config':<8} {'point':<72} {'recall':>7} {'median QPS':>10} {'range':>15} {'tuned/this':>10}"]
        for cfg in c["configs"]:
            ratio = c["ratios"].get(cfg["name"])
            if not cfg["reached"]:
                lines.append(f"  {cfg['name']:<8} {cfg['spec']:<72} did not reach the target")
                continue
            lines.append(f"  {cfg['name']:<8} {cfg['point'][:72]:<72} {cfg['recall']:>7.4f} {cfg['qps']:>10,.0f} "
                         f"{cfg['qps_lo']:>7,.0f}-{cfg['qps_hi']:<7,.0f} " + (f"{ratio:>9.2f}x" if ratio else ""))
        if c["ratio_vs_best_default"]:
            lines.append(f"  tuned / best default ({c['best_default']}): {c['ratio_vs_best_default']:.2f}x")
        lines.append(f"  tuner: {c['tuner']['wall_s']:.0f} s this run ({c['tuner']['study_trials_s']:.0f} s of trials), "
                     f"best {c['tuner']['point']} at {c['tuner']['qps'] or 0:,.0f} QPS")
        g = c.get("grid")
        if g:
            lines.append(f"  default grid: {g['wall_s']:.0f} s, {g['n_points']} points, best at the target "
                         f"{g['best_point']} at {g['best_qps'] or 0:,.0f} QPS (not interleaved; load {g['load']})")
    lines.append(f"wrote {', '.join(p.name for p in result.figures.values())} and tune.json in the output folder")
    return lines
