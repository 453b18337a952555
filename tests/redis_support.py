"""Shared pieces of the Redis tests: a deterministic fraud-like stream and the state of a namespace."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from workbench.features import FeatureStore, FeatureView
from workbench.features.online_redis import RedisOnlineStore

BASE = pd.Timestamp("2024-01-01")
VIEW = FeatureView("acct", ["a", "b"], ["v", "w"], created_timestamp_column="created",
                   dtypes={"a": "BIGINT", "b": "VARCHAR", "v": "DOUBLE", "w": "DOUBLE"})


def stream(n_keys: int, updates: int, seed: int = 0, minute_offset: int = 0) -> pd.DataFrame:
    """``updates`` rows per key on a minute grid (ties of event time happen); v and w encode (key, minute), so a
    hash mixing two rows shows: v == 1000 * a + minute(_t), w == -v."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_keys), updates)
    minute = rng.integers(0, 60, size=len(a)) + minute_offset
    return pd.DataFrame({"a": a, "b": np.where(a % 2 == 0, "x:1", "x"),     # ':' in a key part on purpose
                         "v": 1000.0 * a + minute, "w": -(1000.0 * a + minute),
                         "event_timestamp": BASE + pd.to_timedelta(minute, unit="m"),
                         "created": BASE + pd.to_timedelta(rng.integers(0, 3, size=len(a)), unit="m")})


def build(frames: list[pd.DataFrame], client, namespace: str) -> FeatureStore:
    fs = FeatureStore(online=RedisOnlineStore(client, namespace))
    fs.apply(VIEW)
    for f in frames:
        fs.ingest("acct", f)
    return fs


def windows(minutes: int, width: int, step: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    return [(BASE + timedelta(minutes=s), BASE + timedelta(minutes=s + width)) for s in range(0, minutes, step)]


def state(client, namespace: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash under ``namespace`` (watermarks left out), keys without the namespace."""
    out = {}
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        if not key.endswith(b":_wm"):
            out[key[len(namespace):]] = client.hgetall(key)
    return out


def frames(n_keys: int, updates: int) -> list[pd.DataFrame]:
    """Two batches, the second with rows late for the first's windows (and newer ones)."""
    return [stream(n_keys, updates, seed=1), stream(n_keys, updates // 2 + 1, seed=2, minute_offset=10)]


def materialise(socket: str, namespace: str, n_keys: int, updates: int, order: list[int], barrier=None,
                reverse_views: bool = False) -> int:
    """One writer: build the same offline store, wait at ``barrier``, materialise ``windows`` in ``order``."""
    import redis

    client = redis.Redis(unix_socket_path=socket)
    fs = build(frames(n_keys, updates), client, namespace)
    ws = windows(70, 30, 10)
    if barrier is not None:
        barrier.wait(60)
    for i in order:
        fs.materialize(*ws[i])
    fs.close()
    return 0
