"""`workbench features`: benchmarks of the feature store's point-in-time join.

    workbench features bench [--entities 1000000] [--features 10000000] [--updates-per-key 100] [--sample 10000]
    workbench features sweep [--entities 200000] [--features 1000000] [--updates 10,100,1000,10000]
    workbench features ooc   [--rows 50000000] [--entities 1000000] [--memory-limit 1GB]
    workbench features serve-bench [--entities 20000] [--requests 400] [--clients 1,4,16]
    workbench features engines-bench [--entities 200000] [--features 1000000] [--engines duckdb,merge_asof,spark]
                                     [--spark-master local[2]]

Each prints a table (or ``--json``), writes ``DIR/<command>.json`` (``--out DIR``, default
``<output dir>/features``) and logs it to the ``feature-store`` experiment unless ``--no-track``.
"""

from __future__ import annotations

import argparse

from workbench.cli.args import checked_out, memory_size, out_dir, positive_int, positive_int_list

ENGINES = ("duckdb", "merge_asof", "spark")


def engine_list(text: str) -> list[str]:
    """Comma-separated engine names, each known."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ENGINES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {bad or text!r}; known: {', '.join(ENGINES)}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``features bench``, ``sweep``, ``ooc``, ``engines-bench`` and ``serve-bench``."""
    group = sub.add_parser("features", help="feature store benchmarks (point-in-time joins)")
    cmds = group.add_subparsers(dest="features_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=positive_int, default=None, help="DuckDB threads (default: all cores)")
        p.add_argument("--out", type=out_dir, metavar="DIR", help="output folder of <command>.json "
                       "(default <output dir>/features)")
        p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    b = cmds.add_parser("bench", help="DuckDB vs merge_asof vs brute force: time and peak memory")
    b.add_argument("--entities", type=positive_int, default=1_000_000)
    b.add_argument("--features", type=positive_int, default=10_000_000, help="feature rows, split over two views")
    b.add_argument("--updates-per-key", type=positive_int, default=100)
    b.add_argument("--sample", type=positive_int, default=10_000, help="entity rows for the brute-force range join")
    common(b)
    b.set_defaults(func=run_bench)

    s = cmds.add_parser("sweep", help="join time as updates per key grow (one view)")
    s.add_argument("--entities", type=positive_int, default=200_000)
    s.add_argument("--features", type=positive_int, default=1_000_000)
    s.add_argument("--updates", type=positive_int_list, default="10,100,1000,10000", help="comma-separated updates per key")
    s.add_argument("--sample", type=positive_int, default=20_000, help="entity rows for the brute-force range join")
    common(s)
    s.set_defaults(func=run_sweep)

    o = cmds.add_parser("ooc", help="out-of-core join from a DuckDB file under a memory limit")
    o.add_argument("--rows", type=positive_int, default=50_000_000, help="feature rows")
    o.add_argument("--entities", type=positive_int, default=1_000_000)
    o.add_argument("--updates-per-key", type=positive_int, default=100)
    o.add_argument("--memory-limit", type=memory_size, default="1GB", help="DuckDB memory limit, e.g. 1GB, 512MiB")
    o.add_argument("--workdir", type=out_dir, help="keep the store and spill folder here (default: a temp dir)")
    common(o)
    o.set_defaults(func=run_ooc)

    e = cmds.add_parser("engines-bench", help="the same join on DuckDB, merge_asof and Spark: time, rows/s, "
                        "equal answers, Spark's plan")
    e.add_argument("--entities", type=positive_int, default=200_000)
    e.add_argument("--features", type=positive_int, default=1_000_000, help="feature rows (one view)")
    e.add_argument("--updates-per-key", type=positive_int, default=100)
    e.add_argument("--engines", type=engine_list, default="duckdb,merge_asof,spark",
                   help=f"comma-separated, of {','.join(ENGINES)}")
    e.add_argument("--spark-master", default=None, metavar="URL",
                   help="Spark master (default $WORKBENCH_SPARK_MASTER or local[2])")
    common(e)
    e.set_defaults(func=run_engines)

    v = cmds.add_parser("serve-bench", help="online reads DuckDB vs Redis, materialisation rows/s, cache hits")
    v.add_argument("--entities", type=positive_int, default=20_000, help="entity keys in the view")
    v.add_argument("--updates-per-key", type=positive_int, default=5)
    v.add_argument("--requests", type=positive_int, default=400, help="requests per configuration")
    v.add_argument("--clients", type=positive_int_list, default="1,4,16", help="comma-separated client counts")
    common(v)
    v.set_defaults(func=run_serve)


def _run(args: argparse.Namespace, bench: str, **params: object) -> dict:
    from workbench.config import output_dir
    from workbench.runners import features
    from workbench.tracking.sink import NullSink

    sink = NullSink() if args.no_track else features.tracking_sink(args.store, f"workbench features {bench}")
    result = features.run_features(bench, checked_out(args.out, lambda: output_dir() / "features"), sink=sink,
                                   progress=lambda m: None if args.json else print(m), threads=args.threads,
                                   **params)
    return result.payload


def _emit(args: argparse.Namespace, payload: dict, lines: list[str]) -> int:
    from workbench.cli import emit

    emit(payload, args.json, lines + [f"written: {payload['written']}"])
    return 0


def _row(r: dict) -> str:
    if "error" in r:
        return f"  {r['method']:<30} error: {r['error']}"
    agree = "" if "agrees_with_duckdb" not in r else f"  agrees with DuckDB: {r['agrees_with_duckdb']}"
    return (f"  {r['method']:<30} {r['seconds']:8.3f} s  peak +{r['peak_mem_mb']:8.1f} MB  "
            f"rows {r['rows']:>9,}{agree}")


def run_bench(args: argparse.Namespace) -> int:
    res = _run(args, "bench", n_entities=args.entities, n_features=args.features,
               updates_per_key=args.updates_per_key, sample=args.sample)
    lines = [f"point-in-time join: {res['n_entities']:,} entity rows x {res['n_features']:,} feature rows "
             f"(2 views, ~{res['updates_per_key']} updates/key), threads={args.threads or 'all'}; "
             f"ingest {res['ingest_seconds']:.1f} s; brute force on {res['sample']:,} rows"]
    lines += [_row(r) for r in res["results"]]
    return _emit(args, res, lines)


def run_sweep(args: argparse.Namespace) -> int:
    updates = tuple(args.updates)
    res = _run(args, "sweep", n_entities=args.entities, n_features=args.features, updates=updates,
               sample=args.sample)
    lines = [f"updates-per-key sweep: {res['n_entities']:,} entity rows x {res['n_features']:,} feature rows "
             f"(1 view), brute force on {res['sample']:,} rows, threads={args.threads or 'all'}"]
    for u in updates:
        lines.append(f" {u} updates/key")
        lines += [_row(r) for r in res["results"] if r["updates_per_key"] == u]
    return _emit(args, res, lines)


def run_ooc(args: argparse.Namespace) -> int:
    res = _run(args, "ooc", n_rows=args.rows, n_entities=args.entities, updates_per_key=args.updates_per_key,
               memory_limit=args.memory_limit, workdir=args.workdir)
    lines = [f"out-of-core join: {res['n_entities']:,} entity rows x {res['feature_rows']:,} feature rows from a "
             f"DuckDB file ({res['store_file_bytes'] / 2**30:.2f} GiB), memory_limit={res['memory_limit']}",
             f"  ingest {res['ingest_seconds']:.1f} s, join {res['join_seconds']:.1f} s, "
             f"peak spill {res['peak_spill_bytes'] / 2**20:,.0f} MiB, peak RSS {res['peak_rss_mb']:,.0f} MiB, "
             f"matched {res['matched_fraction']:.3f}"]
    return _emit(args, res, lines)


def run_engines(args: argparse.Namespace) -> int:
    res = _run(args, "engines-bench", n_entities=args.entities, n_features=args.features,
               updates_per_key=args.updates_per_key, engines=tuple(args.engines), spark_master=args.spark_master)
    load = ", ".join(f"{x:.2f}" for x in res["load_average"])
    lines = [f"point-in-time join on {len(res['results'])} engines: {res['n_entities']:,} entity rows x "
             f"{res['n_features']:,} feature rows (1 view, ~{res['updates_per_key']} updates/key); "
             f"{res['cpu_count']} cores, load average {load}"]
    for r in res["results"]:
        if "error" in r:
            lines.append(f"  {r['method']:<11} error: {r['error']}")
            continue
        same = ""
        if "identical" in r:
            same = f"  identical to DuckDB: {r['identical']}"
            same += "" if r["identical"] else f" ({r['differing_rows']} rows differ)"
        cold = ""
        if "cold_seconds" in r:
            cold = f" (cold {r['cold_seconds']:.2f} s, session start {r['session_seconds']:.1f} s)"
        lines.append(f"  {r['method']:<11} {r['seconds']:8.3f} s  {r['rows_per_s']:>12,.0f} entity rows/s{cold}{same}")
    if res.get("spark_plan"):
        lines += ["Spark physical plan:", res["spark_plan"].rstrip()]
    return _emit(args, res, lines + [f"figure: {res['figure']}"])


def run_serve(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.runners import features
    from workbench.tracking.sink import NullSink

    sink = NullSink() if args.no_track else features.tracking_sink(args.store, "workbench features serve-bench")
    res = features.run_serve_bench(checked_out(args.out, lambda: output_dir() / "features"),
                                   n_entities=args.entities, updates_per_key=args.updates_per_key,
                                   requests=args.requests, clients=tuple(args.clients), sink=sink,
                                   progress=lambda m: None if args.json else print(m)).payload
    lines = [f"serving: {res['n_entities']:,} keys, Redis {res['redis']['version']} ({res['redis']['source']}), "
             f"{res['requests']} requests per row", f"  {'store':<7} {'keys':>5} {'clients':>7} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'req/s':>8}"]
    lines += [f"  {r['store']:<7} {r['keys_per_request']:>5} {r['clients']:>7} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
              f"{r['requests_per_s']:8.0f}" for r in res["latency"]]
    lines += [f"  materialise {r['store']:<7} {r['rows']:,} rows  {r['rows_per_s']:,.0f} rows/s" for r in res["materialise"]]
    lines += [f"  cache hit {r['cache']:<10} p50 {r['p50_ms']:.4f} ms  p99 {r['p99_ms']:.4f} ms" for r in res["cache_hit"]]
    return _emit(args, res, lines + [f"figure: {res['figure']}"])
