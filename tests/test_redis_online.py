"""The Redis online store against the DuckDB one and the historical join, on a real redis-server: the same
property test as ``test_features_property`` (0 mismatches), key encoding, and two racing writers."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_support import VIEW, build, frames, materialise, state, windows
from test_features_property import BASE, DTYPES, batches, examples, minutes, norm, store_with, ttls

from workbench.features import FeatureStore, FeatureView
from workbench.features.online_redis import RedisOnlineStore
from workbench.services.redis import RedisServer


@pytest.fixture(scope="module")
def server():
    with RedisServer() as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = server.client()
    yield c
    c.close()


@examples("duckdb")
@given(batches(True), batches(True), ttls, minutes, minutes, st.lists(st.integers(0, 5), max_size=3))
def test_redis_online_equals_duckdb_online_and_historical(client, first, late, ttl, t_mid, t_end, backfills):
    """Incremental steps with late rows in between, plus repeated out-of-order backfill windows; read at T."""
    t_mid, t_end = sorted((t_mid, t_end))
    mid, end = BASE + timedelta(minutes=t_mid), BASE + timedelta(minutes=t_end)
    view = FeatureView("fv", ["k1", "k2"], ["v", "w"], created_timestamp_column="created", ttl=ttl, dtypes=DTYPES)
    ns = f"t{uuid.uuid4().hex}"
    with store_with(first, view, "duckdb") as duck:
        red = FeatureStore(online=RedisOnlineStore(client, ns))
        red.apply(view)
        for b in first:
            red.ingest("fv", b)
        for fs in (duck, red):
            fs.materialize_incremental(mid)
            for b in late:
                fs.ingest("fv", b)
            fs.materialize_incremental(end)
            for m in backfills:   # windows already merged, in any order: must change nothing
                fs.materialize(BASE + timedelta(minutes=min(m, t_end)), end)
        entities = pd.DataFrame({"k1": pd.array([1, 2, 3, None] * 2, dtype="Int64"),
                                 "k2": pd.array([0] * 4 + [1] * 4, dtype="Int64")})
        want = duck.get_online_features(["fv:v", "fv:w"], entities, at=end)
        got = red.get_online_features(["fv:v", "fv:w"], entities, at=end)
        offline = red.get_historical_features(entities.assign(event_timestamp=end), ["fv:v", "fv:w"])
        for at in (end, end + timedelta(minutes=2), BASE - timedelta(minutes=1)):   # expired and future reads
            a = duck.get_online_features(["fv:v", "fv:w"], entities, at=at)
            b = red.get_online_features(["fv:v", "fv:w"], entities, at=at)
            assert b.status.equals(a.status)
            assert all(norm(b.values[f]) == norm(a.values[f]) for f in ("v", "w"))
        red.close()
    assert not got.fallback
    for f in ("v", "w"):
        assert norm(got.values[f]) == norm(offline[f]) == norm(want.values[f]), f
    assert got.status.equals(want.status)
    assert (got.status["w"] == "present").tolist() == offline["w"].notna().tolist()


def test_composite_keys_never_collide(client):
    """Key parts holding the separator characters of a naive encoding stay apart."""
    view = FeatureView("kv", ["a", "b"], ["v"], dtypes={"a": "VARCHAR", "b": "VARCHAR", "v": "DOUBLE"})
    rows = pd.DataFrame({"a": ["x:y", "x", "x,", "x", '"'], "b": ["z", "y:z", "y", ",y", '"'],
                         "v": [1.0, 2.0, 3.0, 4.0, 5.0], "event_timestamp": [BASE] * 5})
    with FeatureStore(online=RedisOnlineStore(client, f"t{uuid.uuid4().hex}")) as fs:
        fs.apply(view, rows)
        fs.materialize(BASE, BASE)
        got = fs.get_online_features(["kv:v"], rows[["a", "b"]], at=BASE)
        assert got.values["v"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert len(state(client, fs.online.namespace)) == 5


def test_two_writers_racing_end_as_one_serial_run(server, client):
    """Two processes materialise overlapping windows, one oldest first, one newest first, released together
    by a barrier; the final hashes equal one serial run's, and the DuckDB online store's values."""
    n_keys, updates = 1500, 8
    ns_race, ns_serial = f"race{uuid.uuid4().hex}", f"serial{uuid.uuid4().hex}"
    n = len(windows(70, 30, 10))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=materialise, args=(str(server.socket), ns_race, n_keys, updates, order, barrier))
             for order in (list(range(n)), list(reversed(range(n))))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    materialise(str(server.socket), ns_serial, n_keys, updates, list(range(n)))
    race, serial = state(client, ns_race), state(client, ns_serial)
    assert len(serial) == n_keys and race == serial
    # and the values served equal the DuckDB online store's after the same windows
    with build(frames(n_keys, updates), client, ns_serial) as red, FeatureStore() as duck:
        duck.apply(VIEW)
        for f in frames(n_keys, updates):
            duck.ingest("acct", f)
        for w in windows(70, 30, 10):
            duck.materialize(*w)
        keys = pd.DataFrame({"a": range(n_keys + 3)}).assign(b=lambda d: ["x:1" if a % 2 == 0 else "x" for a in d.a])
        at = BASE + timedelta(days=1)
        a = duck.get_online_features(["acct:v", "acct:w"], keys, at=at)
        b = red.get_online_features(["acct:v", "acct:w"], keys, at=at)
        assert b.status.equals(a.status) and b.values.equals(a.values.astype(b.values.dtypes.to_dict()))
