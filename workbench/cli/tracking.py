"""`workbench runs [sync]`, `workbench best`, `workbench compare`, `workbench register`, `workbench tracking-bench`,
`workbench tracking serve`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from workbench.cli import emit
from workbench.cli.args import checked_out, out_dir, positive_int, where_clause


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list tracked runs, or `runs sync` to log the runs waiting in the outbox")
    p.add_argument("action", nargs="?", choices=("list", "sync"), default="list")
    p.add_argument("--experiment", help="only this experiment (default: all)")
    p.add_argument("--limit", type=positive_int, default=20, help="newest N runs (default 20)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=_runs)

    p = sub.add_parser("best", help="the best run of an experiment under constraints")
    p.add_argument("--experiment", required=True)
    p.add_argument("--metric", required=True, help="metric to optimise, e.g. qps")
    p.add_argument("--where", type=where_clause, help='constraints, e.g. "recall>=0.95 and params.k=10"')
    p.add_argument("--min", action="store_true", help="lowest value wins (latency, memory)")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.set_defaults(func=_best)

    p = sub.add_parser("compare", help="runs side by side: params and metrics, differing rows marked")
    p.add_argument("run_ids", nargs="+")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=_compare)

    p = sub.add_parser("register", help="register a run's retrieval index as a pyfunc model")
    p.add_argument("run_id")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--alias", help="alias to point at the new version (champion, challenger)")
    p.add_argument("--k", type=positive_int, help="default number of results of predict (default: the bundle's)")
    p.add_argument("--json", action="store_true", help="print the model version as JSON")
    p.set_defaults(func=_register)

    p = sub.add_parser("tracking-bench", help="time logging N configs x P params x M metrics on a fresh store")
    p.add_argument("--configs", type=positive_int, default=100)
    p.add_argument("--params", type=positive_int, default=10)
    p.add_argument("--metrics", type=positive_int, default=10)
    p.add_argument("--uri", help="benchmark this store instead of a fresh temporary SQLite one")
    p.add_argument("--out", type=out_dir, metavar="DIR", help="output folder of tracking_bench.json "
                   "(default: <output dir>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_bench)

    p = sub.add_parser("tracking", help="`tracking serve`: a shared MLflow tracking server on PostgreSQL")
    t = p.add_subparsers(dest="tracking_command", required=True)
    s = t.add_parser("serve", help="run `mlflow server` on 127.0.0.1 with a PostgreSQL backend until Ctrl-C",
                     description="Starts `mlflow server` on 127.0.0.1 with its runs in a PostgreSQL database of its "
                                 "own (default: database `mlflow` on the project's PostgreSQL, or on "
                                 "WORKBENCH_PG_URI's server; created if missing) and its artifacts in a local "
                                 "folder it serves over HTTP; prints the MLFLOW_TRACKING_URI to export and runs "
                                 "until Ctrl-C or SIGTERM, then stops the server (and the project's PostgreSQL, "
                                 "when no other workbench process uses it).")
    s.add_argument("--port", type=positive_int, default=5000, help="port on 127.0.0.1 (default 5000)")
    s.add_argument("--backend-uri", metavar="URI", help="another PostgreSQL instead: postgresql://USER:PASS@HOST:"
                   "PORT/DB or postgresql+psycopg://...; its database DB (--database when it names none or "
                   "postgres) is created if missing")
    s.add_argument("--artifacts", metavar="DIR", help="artifact folder (default: .mlflow/server-artifacts in the "
                   "workspace)")
    s.add_argument("--database", default="mlflow", help="database name on the project's PostgreSQL (default mlflow)")
    s.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes (default 1)")
    s.set_defaults(func=_serve)


def _runs(args: argparse.Namespace) -> int:
    if args.action == "sync":
        return _sync(args)
    from workbench.tracking.query import runs_frame
    from workbench.tracking.runs import end_stale_runs

    killed = end_stale_runs(args.store)  # so that a killed sweep's parent is not listed as RUNNING
    df = runs_frame(args.store, args.experiment).head(args.limit)
    runs = [_run_record(row) for _, row in df.iterrows()]
    lines = [f"{len(runs)} runs in {args.store.uri}" + (f" (experiment {args.experiment})" if args.experiment
                                                        else "")]
    if killed:
        lines.append(f"  ended {len(killed)} runs left RUNNING by processes that died as KILLED")
    for r in runs:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r["metrics"].items())[:4])
        lines.append(f"  {r['run_id'][:12]}  {r['experiment']:<18} {r['status']:<9} {r['run_name'] or '':<36} {shown}")
    emit({"tracking_uri": args.store.uri, "runs": runs}, args.json, lines)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from workbench.tracking.outbox import sync

    store = args.store
    report = sync(store)
    payload = {"tracking_uri": store.uri, "outbox": str(store.outbox), "logged": report.logged,
               "failed": report.failed, "skipped": report.skipped, "stuck": report.stuck}
    lines = [f"outbox {store.outbox}: {len(report.logged)} runs logged to {store.uri}, "
             f"{len(report.failed)} failed, {len(report.stuck)} stuck, {len(report.skipped)} left for later"]
    lines += [f"  failed  {Path(p).name}: {why}" for p, why in report.failed.items()]
    lines += [f"  stuck   {Path(p).name}: {why}" for p, why in report.stuck.items()]
    lines += [f"  skipped {Path(p).name}: {why}" for p, why in report.skipped.items()]
    emit(payload, args.json, lines)
    return 1 if report.failed or report.stuck else 0


def _best(args: argparse.Namespace) -> int:
    from workbench.tracking.query import best_run, resolve_column, runs_frame

    df = runs_frame(args.store, args.experiment)
    row = best_run(args.store, args.experiment, args.metric, args.where, mode="min" if args.min else "max", df=df)
    record = _run_record(row)
    value = row[resolve_column(df, args.metric)]
    payload = {"experiment": args.experiment, "metric": args.metric, "where": args.where,
               "mode": "min" if args.min else "max", "value": value, "run": record}
    lines = [f"best run of {args.experiment} by {'lowest' if args.min else 'highest'} {args.metric}"
             + (f" where {args.where}" if args.where else "") + f": {record['run_id']} ({record['run_name']})",
             f"  {args.metric} = {_fmt(value)}",
             "  metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in record["metrics"].items()),
             "  params:  " + ", ".join(f"{k}={v}" for k, v in record["params"].items())]
    emit(payload, args.json, lines)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from workbench.tracking.query import compare_runs

    table = compare_runs(args.store, args.run_ids)
    emit({"runs": args.run_ids, "table": table.astype(object).where(table.notna(), None).to_dict(orient="index")},
         args.json, table.to_string().splitlines())
    return 0


def _register(args: argparse.Namespace) -> int:
    from workbench.tracking.registry import register_retrieval_model

    version = register_retrieval_model(args.store, args.run_id, args.name, alias=args.alias, k=args.k)
    uri = f"models:/{args.name}@{args.alias}" if args.alias else version.model_uri
    lines = [f"registered run {args.run_id} as {args.name} version {version.version}"
             + (f", alias {args.alias}" if args.alias else ""),
             f"  load: mlflow.set_tracking_uri('{args.store.uri}'); mlflow.pyfunc.load_model('{uri}')"]
    emit({**version.as_dict(), "load_uri": uri, "tracking_uri": args.store.uri}, args.json, lines)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.runners.tracking_bench import run_tracking_bench

    result = run_tracking_bench(args.store, checked_out(args.out, output_dir), args.configs, args.params, args.metrics,
                                uri=args.uri)
    lines = [f"logged {result['configs']} runs x {result['params_per_run']} params x {result['metrics_per_run']} "
             f"metrics in {result['seconds']:.2f} s ({result['runs_per_second']:.0f} runs/s) on a "
             f"{result['store']} store; {result['runs_in_store']} runs in the store, {result['runs_queued']} queued",
             f"  (store schema creation, once per store: {result['setup_seconds']:.2f} s; "
             f"{result['cpu']}, {result['cores']} cores, load average {result['load_average_1min']})",
             f"  written to {result['written']}"]
    emit(result, args.json, lines)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import signal

    from workbench.errors import TrackingError
    from workbench.services.mlflow_server import TrackingServer
    from workbench.services.postgres import redact
    from workbench.tracking.store import store_dir

    artifacts = Path(args.artifacts) if args.artifacts else store_dir() / "server-artifacts"
    server = TrackingServer(artifacts, port=args.port, backend_uri=args.backend_uri, database=args.database,
                            workers=args.workers)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)   # SIGTERM stops it as Ctrl-C does
    try:
        server.start()
        pg = server.postgres
        where = "--backend-uri" if pg is None else f"PostgreSQL {pg.server_version}, " + (
            f"the project's, data {pg.data_dir}" if pg.data_dir else pg.source)
        for line in (f"MLflow {server.version} tracking server on {server.uri} (PID {server.pid}, ready in "
                     f"{server.start_seconds:.1f} s)",
                     f"  backend:   {redact(server.backend or '')} ({where})",
                     f"  artifacts: {server.artifacts} (clients upload over HTTP)",
                     f"  log:       {server.log}",
                     f"export MLFLOW_TRACKING_URI={server.uri}",
                     "Ctrl-C stops it"):
            print(line, flush=True)
        rc = server.wait()
        raise TrackingError(f"mlflow server on port {args.port} exited with code {rc}: {server.last_error()} "
                            f"(log: {server.log})")
    except KeyboardInterrupt:
        server.stop()
        print(f"stopped the tracking server on {server.uri}", flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


def _run_record(row: Any) -> dict[str, Any]:
    """One run of ``runs_frame`` as a dict: params, metrics, tags, and its artifacts with on-disk presence."""
    def section(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix) and _present(v)}

    return {"run_id": row["run_id"], "experiment": row.get("experiment"), "run_name": row.get("run_name"),
            "status": row.get("status"), "start_time": row.get("start_time"), "end_time": row.get("end_time"),
            "parent_run_id": row.get("tags.mlflow.parentRunId") if _present(row.get("tags.mlflow.parentRunId"))
            else None,
            "params": section("params."), "metrics": section("metrics."), "tags": section("tags."),
            "artifact_uri": row.get("artifact_uri"), "artifacts": _artifacts(row.get("artifact_uri"))}


def _artifacts(artifact_uri: str | None) -> list[dict[str, Any]]:
    """Files under a local artifact location (path, bytes); remote stores are listed by their own UI."""
    if not artifact_uri or not artifact_uri.startswith(("file:", "/")):
        return []
    root = Path(unquote(urlparse(artifact_uri).path))
    if not root.is_dir():
        return []
    return [{"path": str(p.relative_to(root)), "local_path": str(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file()]


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
