"""Faults of the Redis serving tier on a real redis-server: SIGKILL during materialisation, an unreachable
server at read time (clear error, or the flagged offline fallback), a missing server at connect."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from datetime import timedelta

import pandas as pd
import pytest
from redis_support import BASE, build, frames, state, stream

from workbench.errors import DatabaseError
from workbench.features.online_redis import RedisOnlineStore
from workbench.services.redis import RedisServer, connect

N_KEYS = 20_000


def _writer(socket: str, ns: str) -> None:
    import redis

    fs = build([stream(N_KEYS, 1, seed=1), stream(N_KEYS, 1, seed=3, minute_offset=100)],
               redis.Redis(unix_socket_path=socket), ns)
    try:
        fs.materialize(BASE, BASE + timedelta(days=1))
    except DatabaseError as exc:    # the expected end: one clear line
        assert "unreachable while materialising 'acct'" in str(exc)
        raise SystemExit(3) from None


def _evals(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(c, {}).get("calls", 0) for c in ("cmdstat_evalsha", "cmdstat_eval"))


def test_sigkill_during_materialisation_leaves_whole_hashes_and_rerun_completes():
    ns = f"t{uuid.uuid4().hex}"
    with RedisServer(persistent=True) as server:
        client = server.client()
        old = build([stream(N_KEYS, 1, seed=1)], client, ns)
        old.materialize(BASE, BASE + timedelta(days=1))
        before = _evals(client)
        proc = mp.get_context("spawn").Process(target=_writer, args=(str(server.socket), ns))
        proc.start()
        deadline = time.monotonic() + 120
        while _evals(client) < before + 3 and time.monotonic() < deadline and proc.is_alive():
            time.sleep(0.005)
        server.kill()                                # SIGKILL mid-way through the newer rows
        proc.join(120)
        assert proc.exitcode == 3
        server.restart()                             # reload the append-only file
        client = server.client()
        got = state(client, ns)
        assert len(got) == N_KEYS
        new = 0
        for h in got.values():                       # whole old row or whole new row, never a mix
            minute = (int(h[b"_t"]) - int(pd.Timestamp(BASE).value // 1000)) // 60_000_000
            a = int(float(h[b"f:v"]) - minute) // 1000
            assert float(h[b"f:v"]) == 1000.0 * a + minute and float(h[b"f:w"]) == -float(h[b"f:v"])
            new += minute >= 100
        assert 0 < new < N_KEYS                      # the kill did land mid-way
        # the rerun completes and ends as a clean run
        rerun = build([stream(N_KEYS, 1, seed=1), stream(N_KEYS, 1, seed=3, minute_offset=100)], client, ns)
        rerun.materialize(BASE, BASE + timedelta(days=1))
        assert all(int(h[b"_t"]) >= int(pd.Timestamp(BASE + timedelta(minutes=100)).value // 1000)
                   for h in state(client, ns).values())
        for fs in (old, rerun):
            fs.close()
        client.close()


def test_unreachable_at_read_time_errors_or_falls_back_when_asked():
    server = RedisServer().start()
    fs = build(frames(50, 4), server.client(), f"t{uuid.uuid4().hex}")
    fs.materialize(BASE, BASE + timedelta(days=1))
    keys = pd.DataFrame({"a": range(52), "b": ["x:1" if a % 2 == 0 else "x" for a in range(52)]})
    at = BASE + timedelta(days=1)
    online = fs.get_online_features(["acct:v"], keys, at=at)
    server.stop()
    with pytest.raises(DatabaseError) as err:
        fs.get_online_features(["acct:v"], keys, at=at)
    msg = str(err.value)
    assert "\n" not in msg and "unreachable while reading online features" in msg and "fallback='offline'" in msg
    got = fs.get_online_features(["acct:v"], keys, at=at, fallback="offline")
    assert got.fallback and got.reason.startswith("Redis unreachable")
    offline = fs.get_historical_features(keys.assign(event_timestamp=at), ["acct:v"])
    assert got.values["v"].tolist() == offline["v"].astype(object).where(offline["v"].notna(), None).tolist()
    assert got.values["v"].tolist() == online.values["v"].tolist()    # everything was materialised
    assert got.status["v"].tolist() == ["present"] * 50 + ["missing"] * 2
    fs.close()


def test_unreachable_user_server_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_REDIS_URI", f"unix://{tmp_path}/none.sock")
    with pytest.raises(DatabaseError) as err:
        connect()
    assert str(err.value).startswith(f"cannot reach Redis at WORKBENCH_REDIS_URI=unix://{tmp_path}/none.sock: ")
    assert "\n" not in str(err.value)
    with pytest.raises(DatabaseError, match="not a Redis URI"):
        connect("http://x")


def test_online_store_rejects_unknown_fallback():
    from workbench.errors import FeatureStoreError

    with RedisServer() as server, build(frames(5, 2), server.client(), "t") as fs:
        assert isinstance(fs.online, RedisOnlineStore)
        with pytest.raises(FeatureStoreError, match="fallback must be"):
            fs.get_online_features(["acct:v"], [{"a": 1, "b": "x"}], fallback="cache")
