"""The feature-store runners: the point-in-time join benchmarks (``workbench features bench|sweep|ooc``)
and the leakage demonstration (notebook 07), each reported to a sink: the run as the sweep, each method
(or join) as a point, the written files on the parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.bench import join_benchmark, out_of_core, updates_sweep
from workbench.features.engines_bench import engines_benchmark, plot_engines
from workbench.features.leakage import (
    build_store,
    leakage_experiment,
    naive_latest_join,
    online_check,
    plot_scores,
    plot_timeline,
)
from workbench.features.store import FeatureStore
from workbench.features.serve_bench import plot_latency, serve_benchmark
from workbench.features.synth import EPOCH, fraud_stream
from workbench.hybrid.cache_redis import RedisResultCache, hit_latency
from workbench.hybrid.searcher import ResultCache
from workbench.io import atomic_write_json
from workbench.services import redis as redis_service
from workbench.tracking.experiments import FEATURE_STORE
from workbench.tracking.sink import ChildRun, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store

BENCHES = {"bench": join_benchmark, "sweep": updates_sweep, "ooc": out_of_core, "engines-bench": engines_benchmark}
FIGURES = {"engines-bench": ("engines_bench.png", plot_engines)}
METRIC_FIELDS = ("seconds", "peak_mem_mb", "rss_before_mb", "rows", "ingest_seconds", "join_seconds",
                 "peak_spill_bytes", "peak_rss_mb", "store_file_bytes", "matched_fraction", "auc_offline",
                 "auc_later", "cold_seconds", "session_seconds", "rows_per_s", "input_rows_per_s_per_core",
                 "differing_rows")
PARAM_FIELDS = ("method", "updates_per_key", "agrees_with_duckdb", "memory_limit", "identical", "cores")
RISK = "account_risk:chargebacks_total"


def method_run(row: Mapping[str, Any]) -> ChildRun:
    """A method's (or join's) row as a child run: what it is as params, what it measured as metrics."""
    name = row["method"] + (f" u={row['updates_per_key']}" if "updates_per_key" in row else "")
    return ChildRun(name, params={k: row[k] for k in PARAM_FIELDS if k in row},
                    metrics={k: row[k] for k in METRIC_FIELDS if k in row},
                    tags={"error": row["error"]} if "error" in row else {})


def tracking_sink(store: Store, command: str) -> TrackingSink:
    """The sink that logs to ``store``'s ``feature-store`` experiment."""
    return TrackingSink(store, FEATURE_STORE, command, method_run)


@dataclass
class FeaturesResult:
    """One benchmark: what its JSON holds, its method rows, and where the JSON went."""

    bench: str
    payload: dict[str, Any]
    frame: pd.DataFrame
    out: Path


def run_features(bench: str, out_dir: str | Path, *, sink: Sink | None = None,
                 progress: Callable[[str], None] = print, **params: Any) -> FeaturesResult:
    """Run benchmark ``bench`` (``bench``, ``sweep`` or ``ooc``: ``workbench.features.bench``'s
    ``join_benchmark``, ``updates_sweep``, ``out_of_core``; ``engines-bench``: ``features.engines_bench``) with
    ``params``; write ``out_dir/<bench>.json`` (and the benchmark's figure, if it has one)."""
    if bench not in BENCHES:
        raise FeatureStoreError(f"unknown feature benchmark {bench!r}; known: {', '.join(BENCHES)}")
    for name, value in params.items():
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and v <= 0 for v in values):
            raise FeatureStoreError(f"--{name.replace('_', '-')} must be positive, got {value}")
    sink = sink or NullSink()
    out = Path(out_dir) / f"{bench}.json"
    with sink.sweep(f"features {bench}", params, None):
        payload = BENCHES[bench](**params, progress=progress)
        rows = payload["results"] if "results" in payload else [{"method": "duckdb_out_of_core", **payload}]
        for row in rows:
            sink.point(row)
        atomic_write_json(out, payload)
        written = [out]
        if bench in FIGURES:
            name, plot = FIGURES[bench]
            written.append(plot(payload, Path(out_dir) / name))
        sink.attach("results", written, metrics=headline(bench, payload))
    extra = {"figure": str(written[1])} if len(written) > 1 else {}
    return FeaturesResult(bench, {**payload, "written": str(out), **extra}, pd.DataFrame(rows), out)


def headline(bench: str, payload: Mapping[str, Any]) -> dict[str, float]:
    """The figures of a benchmark worth a metric on the parent run."""
    if bench == "ooc":
        return {k: payload[k] for k in ("ingest_seconds", "join_seconds", "peak_spill_bytes", "peak_rss_mb")}
    if bench == "sweep":
        return {f"{r['method']}_u{r['updates_per_key']}_seconds": r["seconds"] for r in payload["results"]
                if "seconds" in r}
    return {f"{r['method']}_{k}": r[k] for r in payload["results"] for k in ("seconds", "peak_mem_mb") if k in r}


@dataclass
class LeakageResult:
    """The leakage demonstration: data, store, the joins side by side, scores, weights, the online check."""

    data: dict[str, pd.DataFrame]
    store: FeatureStore
    joins: pd.DataFrame          # the first frauds of the training period: point-in-time vs naive value
    experiment: dict[str, Any]   # ``leakage_experiment``'s output
    scores: pd.DataFrame
    weights: pd.DataFrame
    online: dict[str, Any]
    figures: dict[str, Path]
    summary: dict[str, Any]


def run_leakage(out_dir: str | Path, n_accounts: int = 2000, days: int = 180, train_days: int = 90,
                label_delay_days: int = 14, seed: int = 0, sink: Sink | None = None) -> LeakageResult:
    """Train the same model on a naive latest-value join and on the point-in-time join of a synthetic fraud
    stream (``workbench.features.leakage``), score both offline and on the later period, check that the
    online store serves what the offline join computes; figures in ``out_dir``."""
    out, sink = Path(out_dir), sink or NullSink()
    params = {"n_accounts": n_accounts, "days": days, "train_days": train_days,
              "label_delay_days": label_delay_days, "seed": seed}
    data = fraud_stream(n_accounts=n_accounts, days=days, seed=seed)
    tx, risk = data["transactions"], data["account_risk"]
    train_end = EPOCH + timedelta(days=train_days)
    as_of = train_end + timedelta(days=label_delay_days)
    with sink.sweep(f"leakage {n_accounts} accounts {days} days seed {seed}", params, None):
        fs = build_store(data)
        frauds = tx[(tx.is_fraud == 1) & (tx.event_timestamp < train_end)]
        ent = frauds.head(5)[["account_id", "event_timestamp", "is_fraud"]]
        naive = naive_latest_join(fs, ent, [RISK], as_of)
        joins = fs.get_historical_features(ent, [RISK]).assign(
            naive_chargebacks_total=naive["chargebacks_total"].to_numpy())
        res = leakage_experiment(fs, tx, train_end, timedelta(days=label_delay_days), seed=seed)
        labels = {"naive": "naive latest-value join", "pit": "point-in-time join"}
        for key, label in labels.items():
            sink.point({"method": label, "auc_offline": res[f"{key}_auc_offline"],
                        "auc_later": res[f"{key}_auc_later"]})
        scores = pd.DataFrame({"offline AUC (holdout, own join)": [res["naive_auc_offline"], res["pit_auc_offline"]],
                               "later-period AUC (as served)": [res["naive_auc_later"], res["pit_auc_later"]]},
                              index=list(labels.values()))
        weights = pd.DataFrame({"naive": res["naive_weights"], "point-in-time": res["pit_weights"]})
        title = (f"Leakage: fraud stream, {n_accounts:,} accounts, {days} days, seed {seed}\n"
                 f"train < day {train_days}, set built day {train_days + label_delay_days}; "
                 f"{res['n_train']:,} train rows, {res['n_later']:,} later rows; logistic regression")
        # an account whose fraud was charged back before the set was built: the naive join's leak shows
        account = int(frauds[frauds.account_id.isin(risk[risk.event_timestamp <= as_of].account_id)].account_id.iloc[0])
        figures = {"scores": plot_scores(res, out / "scores.png", title),
                   "timeline": plot_timeline(data, account, as_of, out / "timeline.png",
                                             f"Account {account}: feature values and label times "
                                             f"(fraud stream, seed {seed})")}
        keys = pd.DataFrame({"account_id": range(n_accounts + 5)})   # five accounts never seen
        check = online_check(fs, [RISK, "transactions:amount"], keys, as_of)
        mismatches = check["chargebacks_total_mismatches"] + check["amount_mismatches"]
        summary = {**params, "n_transactions": int(len(tx)), "fraud_rate": float(tx.is_fraud.mean()),
                   "n_chargeback_rows": int(len(risk)), "as_of": str(as_of),
                   **{k: res[k] for k in ("n_train", "n_holdout", "n_later", "naive_auc_offline",
                                          "naive_auc_later", "pit_auc_offline", "pit_auc_later")},
                   "online_mismatches": mismatches, "online_status_amount": check["amount_status"],
                   "timeline_account": account, "figures": sorted(p.name for p in figures.values())}
        sink.attach("figures", list(figures.values()), metrics={"online_mismatches": mismatches})
    return LeakageResult(data, fs, joins, res, scores, weights, check, figures, summary)


def run_serve_bench(out_dir: str | Path, *, n_entities: int = 20_000, updates_per_key: int = 5,
                    requests: int = 400, clients: tuple[int, ...] = (1, 4, 16), sink: Sink | None = None,
                    progress: Callable[[str], None] = print) -> FeaturesResult:
    """The serving tier measured (``features.serve_bench``): DuckDB vs Redis online reads and materialisation,
    cache hits in-process vs Redis; Redis is ``WORKBENCH_REDIS_URI`` or a server started (and stopped) here.
    Writes ``out_dir/serve-bench.json`` and ``serve_latency.png``."""
    sink, out = sink or NullSink(), Path(out_dir)
    params = {"n_entities": n_entities, "updates_per_key": updates_per_key, "requests": requests,
              "clients": list(clients)}
    server = None if redis_service.configured() else redis_service.RedisServer().start()
    try:
        client = server.client() if server else redis_service.connect()
        with sink.sweep("features serve-bench", params, None):
            payload = serve_benchmark(client, n_entities, updates_per_key, clients=clients, requests=requests,
                                      progress=progress)
            payload["cache_hit"] = [{"cache": "in-process", **hit_latency(ResultCache())},
                                    {"cache": "redis", **hit_latency(RedisResultCache(client, namespace="wb:bench"))}]
            payload["redis"] = {"version": redis_service.server_version(client),
                                "source": "project-started" if server else redis_service.REDIS_URI_ENV}
            for row in payload["latency"]:
                sink.point({"method": f"{row['store']} {row['keys_per_request']} keys x{row['clients']}",
                            "seconds": row["p50_ms"] / 1000})
            path = atomic_write_json(out / "serve-bench.json", payload)
            png = plot_latency(payload, out / "serve_latency.png",
                               f"Online reads: DuckDB vs Redis {payload['redis']['version']}, "
                               f"{n_entities:,} keys, 3 features, threads on one process")
            sink.attach("results", [path, png], metrics={f"{r['store']}_materialise_rows_per_s": r["rows_per_s"]
                                                        for r in payload["materialise"]})
        client.close()
    finally:
        if server is not None:
            server.stop()
    payload = {**payload, "written": str(path), "figure": str(png)}
    return FeaturesResult("serve-bench", payload, pd.DataFrame(payload["latency"]), path)
