"""Offline store: versions, schema checks on ingest, all-or-nothing batches, files, and the API's errors."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from workbench.errors import FeatureStoreError
from workbench.features import FeatureStore, FeatureView


def frame(n: int = 3, **extra) -> pd.DataFrame:
    df = pd.DataFrame({"k": range(n), "x": [float(i) for i in range(n)],
                       "event_timestamp": pd.date_range("2024-01-01", periods=n, freq="h", unit="us")})
    return df.assign(**extra)


def count(fs: FeatureStore, name: str) -> int:
    return fs.con.execute(f"SELECT count(*) FROM {fs.offline.table(name)}").fetchall()[0][0]


def test_schema_change_makes_new_version_old_kept():
    fs = FeatureStore()
    assert fs.apply(FeatureView("v", ["k"], ["x"]), frame()) == 1
    assert fs.apply(FeatureView("v", ["k"], ["x"], ttl=timedelta(hours=1))) == 1       # ttl only: same version
    assert fs.get_feature_view("v").ttl == timedelta(hours=1)
    assert fs.apply(FeatureView("v", ["k"], ["x"]), frame().assign(x=[1, 2, 3])) == 1    # ints fit DOUBLE x
    assert fs.apply(FeatureView("v", ["k"], ["x", "y"]), frame(y=1)) == 2              # new feature: version 2
    assert fs.apply(FeatureView("v", ["k"], ["x", "y"], dtypes={"k": "BIGINT", "x": "DOUBLE", "y": "VARCHAR"})) == 3
    assert fs.offline.versions("v") == [1, 2, 3]
    assert count(fs, "v") == 0                                                          # v3 is new and empty
    assert fs.con.execute(f"SELECT count(*) FROM {fs.offline.table('v', 1)}").fetchall()[0][0] == 6


@pytest.mark.parametrize("bad, message", [
    (frame().drop(columns="x"), r"lacks column\(s\) \['x'\]"),
    (frame().assign(x=["a", "b", "c"]), "column 'x' has type VARCHAR, the view's schema says DOUBLE"),
    (frame().assign(k=[0.5, 1.0, 2.0]), "column 'k' has type DOUBLE, the view's schema says BIGINT"),
    (frame().assign(event_timestamp=[1, 2, 3]), "event_timestamp must hold timestamps, got dtype int64"),
    (frame().assign(event_timestamp=pd.to_datetime(["2024-01-01", None, "2024-01-02"]).as_unit("us")),
     "row 1 has no event_timestamp"),
    (frame().assign(event_timestamp=pd.to_datetime(["2024-01-01 00:00:00.0000001"] * 3)), "sub-microsecond"),
])
def test_bad_batch_is_refused_and_nothing_written(bad, message):
    fs = FeatureStore()
    fs.apply(FeatureView("v", ["k"], ["x"]), frame())
    with pytest.raises(FeatureStoreError, match=message):
        fs.ingest("v", bad)
    assert count(fs, "v") == 3
    assert fs.offline.state("v")["next_row"] == 3


def test_failure_while_writing_rolls_back():
    fs = FeatureStore()
    fs.apply(FeatureView("v", ["k"], ["x"], dtypes={"k": "TINYINT", "x": "DOUBLE"}))
    with pytest.raises(FeatureStoreError, match="nothing written"):
        fs.ingest("v", frame(n=300))          # k = 128 does not fit TINYINT: the cast fails mid-batch
    assert count(fs, "v") == 0


def test_int_widens_into_float_and_extra_columns_ignored():
    fs = FeatureStore()
    fs.apply(FeatureView("v", ["k"], ["x"]), frame())
    assert fs.ingest("v", frame().assign(x=[1, 2, 3], unrelated="z")) == 3


def test_file_store_persists_and_parquet_ingest(tmp_path):
    path = tmp_path / "fs.duckdb"
    pq = tmp_path / "rows.parquet"
    frame(5).assign(event_timestamp=lambda d: d.event_timestamp.dt.tz_localize("Asia/Tokyo")).to_parquet(pq)
    with FeatureStore(path) as fs:
        fs.apply(FeatureView("v", ["k"], ["x"]), pq)
    with FeatureStore(path) as fs:
        ent = pd.DataFrame({"k": [4], "event_timestamp": [pd.Timestamp("2024-01-01 04:00+09:00")]})
        assert fs.get_historical_features(ent, ["v:x"])["x"].tolist() == [4.0]
    with FeatureStore(path) as fs, pytest.raises(FeatureStoreError, match="no such file"):
        fs.ingest("v", tmp_path / "missing.parquet")


def test_api_errors():
    fs = FeatureStore()
    with pytest.raises(FeatureStoreError, match="unknown feature view 'nope'"):
        fs.get_historical_features(frame(), ["nope:x"])
    fs.apply(FeatureView("v", ["k"], ["x"]), frame())
    with pytest.raises(FeatureStoreError, match="has no feature 'y'"):
        fs.get_historical_features(frame(), ["v:y"])
    with pytest.raises(FeatureStoreError, match="must look like 'view:feature'"):
        fs.get_historical_features(frame(), ["x"])
    with pytest.raises(FeatureStoreError, match="join key 'k': entity_df has VARCHAR"):
        fs.get_historical_features(frame().drop(columns="x").assign(k=["a", "b", "c"]), ["v:x"])
    with pytest.raises(FeatureStoreError, match="'x' of v:x clashes with an entity_df column"):
        fs.get_historical_features(frame(), ["v:x"])
    with pytest.raises(FeatureStoreError, match="reserved prefix"):
        FeatureView("w", ["_wb_row"], ["x"])
    with pytest.raises(FeatureStoreError, match="give dtypes or a source"):
        fs.apply(FeatureView("w", ["k"], ["x"]))


def test_window_features_fixed_example():
    fs = FeatureStore()
    trips = pd.DataFrame({"driver": [1, 1, 1, 2], "trips": [1, 2, 4, 8],
                          "event_timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:30",
                                                             "2024-01-01 02:00", "2024-01-01 00:00"]).as_unit("us")})
    fs.apply(FeatureView("t", ["driver"], ["trips"]), trips)
    ent = pd.DataFrame({"driver": [1, 1, 3], "event_timestamp": pd.to_datetime(
        ["2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 02:00"]).as_unit("us")})
    out = fs.get_window_features(ent, "t:trips", [timedelta(hours=1), timedelta(days=1)], ["count", "sum", "max"])
    # at 01:00 the 1 h window [00:00, 01:00] holds 1 and 2 (both ends inclusive); at 02:00 it holds only 4
    assert out["trips_count_1h"].tolist() == [2, 1, 0]
    assert out["trips_sum_1h"].tolist()[:2] == [3, 4] and pd.isna(out["trips_sum_1h"].iloc[2])
    assert out["trips_sum_1d"].tolist()[:2] == [3, 7]
    assert out["trips_max_1d"].tolist()[:2] == [2, 4]
