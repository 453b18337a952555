"""Online reads are planned once per feature list: a request after the first runs no registry or catalog query
(DuckDB store: one read query per view; Redis store: no DuckDB query at all), and apply clears the plan."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pandas as pd
import pytest

from workbench.errors import FeatureStoreError
from workbench.features import FeatureStore, FeatureView
from workbench.features.online_redis import RedisOnlineStore
from workbench.services.redis import RedisServer

T = pd.Timestamp


class CountingConnection:
    """A DuckDB connection that records the SQL of every ``execute``."""

    def __init__(self, con):
        self.con, self.sql = con, []

    def execute(self, sql, *args, **kwargs):
        self.sql.append(sql)
        return self.con.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _store(online=None) -> FeatureStore:
    fs = FeatureStore(online=online)
    fs.apply(FeatureView("a", ["user"], ["x", "y"], ttl=timedelta(hours=1)),
             pd.DataFrame({"user": [1, 2], "x": [1.0, 2.0], "y": [3.0, 4.0],
                           "event_timestamp": [T("2024-01-01 10:00"), T("2024-01-01 11:00")]}))
    fs.apply(FeatureView("b", ["shop", "user"], ["z"]),
             pd.DataFrame({"shop": ["s"], "user": [1], "z": [7.0], "event_timestamp": [T("2024-01-01 09:00")]}))
    fs.materialize(T("2024-01-01"), T("2024-01-02"))
    return fs


def _read(fs: FeatureStore, at: pd.Timestamp = T("2024-01-01 11:00")):
    rows = pd.DataFrame({"user": [1, 2, 3], "shop": ["s", "s", "s"]})
    return fs.get_online_features(["a:x", "a:y", "b:z"], rows, at=at)


def _counted(fs: FeatureStore) -> CountingConnection:
    fs.offline.con = CountingConnection(fs.offline.con)
    return fs.offline.con


def test_duckdb_request_after_the_first_runs_one_query_per_view():
    with _store() as fs:
        first = _read(fs)
        con = _counted(fs)
        again = _read(fs)
        assert len(con.sql) == 2                                  # views a and b, nothing else
        assert all("online_" in s and "_wb_feature_views" not in s and "duckdb_" not in s for s in con.sql)
        assert again.values.equals(first.values) and again.status.equals(first.status)
        assert again.status["x"].tolist() == ["present", "present", "missing"]
        assert again.values["z"].tolist() == [7.0, None, None]


def test_apply_clears_the_plan():
    with _store() as fs:
        assert _read(fs).status["x"].tolist() == ["present", "present", "missing"]
        fs.apply(FeatureView("a", ["user"], ["x", "y"], ttl=timedelta(minutes=30)))      # ttl only: same version
        assert _read(fs).status["x"].tolist() == ["expired", "present", "missing"]
        fs.apply(FeatureView("a", ["user"], ["x", "y", "w"],                              # new, empty version
                             dtypes={"user": "BIGINT", "x": "DOUBLE", "y": "DOUBLE", "w": "DOUBLE"}))
        assert _read(fs).status["x"].tolist() == ["missing", "missing", "missing"]


def test_a_cached_plan_still_checks_the_request():
    with _store() as fs:
        _read(fs)
        with pytest.raises(FeatureStoreError, match="lacks join key 'shop'"):
            fs.get_online_features(["a:x", "a:y", "b:z"], pd.DataFrame({"user": [1]}))
        with pytest.raises(FeatureStoreError, match="output column 'x' of a:x clashes with an entity_df column"):
            fs.get_online_features(["a:x", "a:y", "b:z"], pd.DataFrame({"user": [1], "shop": ["s"], "x": [0]}))


def test_redis_request_after_the_first_runs_no_duckdb_query():
    with RedisServer() as server:
        client = server.client()
        try:
            with _store(RedisOnlineStore(client, f"wb:test:{uuid.uuid4().hex}")) as fs, _store() as duck:
                first = _read(fs)
                con = _counted(fs)
                again = _read(fs)
                assert con.sql == []
                assert again.values.equals(first.values) and again.status.equals(first.status)
                assert again.status.equals(_read(duck).status)
        finally:
            client.close()
