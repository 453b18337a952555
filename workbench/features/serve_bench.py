"""What serving costs: online read latency of the DuckDB and the Redis online stores (1 and 100 entity keys a
request, 1/4/16 concurrent clients as threads, each with its own DuckDB cursor) and materialisation rows/s.

Both stores answer through the same ``FeatureStore.get_online_features`` (ttl check, status; the request plan
is resolved on the first request and cached, so no registry query is timed), so the difference is the store:
one parameterised DuckDB query per view against one Redis pipeline per request. Threads share the GIL and,
here, the machine's cores with the Redis server: the concurrency figures are what one Python process serving
many requests sees, not a cluster's capacity.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from workbench.features.online_redis import RedisOnlineStore
from workbench.features.store import FeatureStore
from workbench.features.view import FeatureView
from workbench.plotting import pyplot, save_png

BASE = pd.Timestamp("2024-01-01")
REFS = ["serve:f0", "serve:f1", "serve:f2"]


def _frame(n_entities: int, updates: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    key = np.repeat(np.arange(n_entities), updates)
    return pd.DataFrame({"entity_id": key, **{f"f{i}": rng.random(len(key)) for i in range(3)},
                         "event_timestamp": BASE + pd.to_timedelta(rng.integers(0, 86_400, len(key)), unit="s")})


def _clone(fs: FeatureStore) -> FeatureStore:
    """A handle for one thread: its own DuckDB cursor on the same database (a connection is not thread-safe)."""
    other = copy.copy(fs)
    other.offline = copy.copy(fs.offline)
    other.offline.con = fs.offline.con.cursor()
    return other


def read_latency(fs: FeatureStore, n_entities: int, batch: int, clients: int, requests: int,
                 seed: int) -> dict[str, float]:
    """p50/p99 (ms) of one request of ``batch`` keys, ``clients`` threads sharing ``requests`` requests."""
    at = BASE + timedelta(days=1)
    handles = [_clone(fs) for _ in range(clients)]

    def work(i: int) -> list[float]:
        rng, out = np.random.default_rng(seed + i), []
        for _ in range(max(1, requests // clients)):
            keys = pd.DataFrame({"entity_id": rng.integers(0, n_entities, batch)})
            t0 = time.perf_counter()
            handles[i].get_online_features(REFS, keys, at=at)
            out.append(time.perf_counter() - t0)
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = np.array([x for part in pool.map(work, range(clients)) for x in part]) * 1000
    wall = time.perf_counter() - start
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "requests": int(len(lat)), "requests_per_s": float(len(lat) / wall)}


def serve_benchmark(client: Any, n_entities: int = 20_000, updates_per_key: int = 5,
                    batches: Sequence[int] = (1, 100), clients: Sequence[int] = (1, 4, 16), requests: int = 400,
                    seed: int = 0, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Materialise the same view into DuckDB and into Redis (``client``), then time reads; a JSON-able dict."""
    df = _frame(n_entities, updates_per_key, seed)
    view = FeatureView("serve", ["entity_id"], ["f0", "f1", "f2"], ttl=timedelta(days=2))
    stores = {"duckdb": FeatureStore(), "redis": FeatureStore(online=RedisOnlineStore(client, f"wb:bench:{seed}"))}
    client.delete(*client.keys(f"wb:bench:{seed}:*") or ["-"])
    materialise, latency = [], []
    try:
        for name, fs in stores.items():
            fs.apply(view, df)
            t0 = time.perf_counter()
            fs.materialize(BASE, BASE + timedelta(days=1))
            sec = time.perf_counter() - t0
            materialise.append({"store": name, "rows": len(df), "keys": n_entities, "seconds": sec,
                                "rows_per_s": len(df) / sec})
            progress(f"materialise {name}: {len(df):,} rows in {sec:.2f} s")
        for name, fs in stores.items():
            for b in batches:
                for c in clients:
                    row = {"store": name, "keys_per_request": b, "clients": c,
                           **read_latency(fs, n_entities, b, c, requests, seed)}
                    latency.append(row)
                    progress(f"{name} {b} keys x {c} clients: p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms")
    finally:
        for fs in stores.values():
            fs.close()
        client.delete(*client.keys(f"wb:bench:{seed}:*") or ["-"])
    return {"n_entities": n_entities, "updates_per_key": updates_per_key, "requests": requests,
            "materialise": materialise, "latency": latency}


def plot_latency(payload: dict[str, Any], path: str | Path, title: str) -> Path:
    """p50 (solid) and p99 (dashed) read latency against concurrent clients, one panel per request size."""
    plt = pyplot()
    rows = pd.DataFrame(payload["latency"])
    sizes = sorted(rows.keys_per_request.unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for ax, b in zip(axes[0], sizes):
        for (store, part), color in zip(rows[rows.keys_per_request == b].groupby("store"), ("C0", "C1")):
            ax.plot(part.clients, part.p50_ms, "o-", color=color, label=f"{store} p50")
            ax.plot(part.clients, part.p99_ms, "s--", color=color, label=f"{store} p99")
        ax.set(xscale="log", yscale="log", xlabel="concurrent clients (threads)", ylabel="latency per request (ms)",
               title=f"{b} entity key{'s' if b > 1 else ''} per request")
        ax.set_xticks(sorted(rows.clients.unique()), [str(c) for c in sorted(rows.clients.unique())])
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
