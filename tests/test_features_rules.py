"""The 12 semantic rules of issue 6, each on a hand-written table with the expected answer stated, on both
offline engines (DuckDB; Spark in local mode, one session for the module)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from spark_support import engine, spark_session  # noqa: F401  (fixtures)

from workbench.errors import FeatureStoreError
from workbench.features import FeatureStore, FeatureView

T = pd.Timestamp  # naive = UTC


def ts(*values: str | None) -> pd.DatetimeIndex:
    return pd.to_datetime(list(values), format="ISO8601").as_unit("us")


@pytest.fixture
def store(engine):
    """``store(view, df)``: an in-memory store on the test's engine holding ``df``; closed after the test."""
    opened = []

    def make(view: FeatureView | None = None, df: pd.DataFrame | None = None) -> FeatureStore:
        fs = FeatureStore(engine=engine)
        opened.append(fs)
        if view is not None:
            fs.apply(view, df)
        return fs

    yield make
    for fs in opened:
        fs.close()


@pytest.fixture
def driver(store) -> FeatureStore:
    df = pd.DataFrame({"driver_id": [1, 1, 2],
                       "trips": [10, 20, 30],
                       "event_timestamp": ts("2024-01-01 10:00", "2024-01-01 12:00", "2024-01-01 11:00")})
    return store(FeatureView("d", ["driver_id"], ["trips"]), df)


def values(df: pd.DataFrame, col: str) -> list:
    return [None if pd.isna(v) else v for v in df[col]]


# 1. entity_df time column: event_timestamp, or exactly one datetime column; naive = UTC; missing key is an error
def test_rule1_timestamp_column_and_naive_utc(driver):
    ent = pd.DataFrame({"driver_id": [1, 1], "when": ts("2024-01-01 11:59", "2024-01-01 12:00")})
    # 11:59 UTC sees the 10:00 row (10); 12:00 UTC sees the 12:00 row (20)
    assert values(driver.get_historical_features(ent, ["d:trips"]), "trips") == [10, 20]
    aware = pd.DataFrame({"driver_id": [1], "event_timestamp": [T("2024-01-01 12:30+01:00")]})  # 11:30 UTC
    assert values(driver.get_historical_features(aware, ["d:trips"]), "trips") == [10]


def test_rule1_errors(driver):
    with pytest.raises(FeatureStoreError, match="join key 'driver_id'"):
        driver.get_historical_features(pd.DataFrame({"event_timestamp": ts("2024-01-02")}), ["d:trips"])
    two = pd.DataFrame({"driver_id": [1], "a": ts("2024-01-02"), "b": ts("2024-01-02")})
    with pytest.raises(FeatureStoreError, match="exactly one datetime column; found 2"):
        driver.get_historical_features(two, ["d:trips"])


# 2. one output row per input row, input order and index kept, duplicates kept
def test_rule2_rows_order_duplicates(driver):
    ent = pd.DataFrame({"driver_id": [2, 1, 2, 1], "event_timestamp": ts("2024-01-02", "2024-01-01 11:00",
                                                                          "2024-01-02", "2024-01-01 13:00")},
                       index=[7, 3, 5, 1])
    out = driver.get_historical_features(ent, ["d:trips"])
    assert list(out.index) == [7, 3, 5, 1]
    assert values(out, "trips") == [30, 10, 30, 20]


# 3. feature_ts <= entity_ts, equality counts
def test_rule3_equal_time_counts(driver):
    ent = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": ts("2024-01-01 12:00", "2024-01-01 11:59:59.999999")})
    assert values(driver.get_historical_features(ent, ["d:trips"]), "trips") == [20, 10]


# 4. ttl inclusive, per row; None = no bound; expired -> NULL
def test_rule4_ttl_inclusive(store):
    df = pd.DataFrame({"k": [1], "x": [5.0], "event_timestamp": ts("2024-01-01 00:00")})
    fs = store(FeatureView("v", ["k"], ["x"], ttl=timedelta(hours=1)), df)
    ent = pd.DataFrame({"k": [1, 1], "event_timestamp": ts("2024-01-01 01:00", "2024-01-01 01:00:00.000001")})
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [5.0, None]   # exactly ttl old: kept
    fs.apply(FeatureView("v", ["k"], ["x"], ttl=None))                              # same schema, no bound
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [5.0, 5.0]


# 5. latest event, then latest created (NULL created = oldest), then last ingested
def test_rule5_tie_order(store):
    df = pd.DataFrame({"k": [1, 1, 1, 1], "x": [1.0, 2.0, 3.0, 4.0],
                       "event_timestamp": ts("2024-01-01", "2024-01-01", "2024-01-01", "2023-12-31"),
                       "created": ts("2024-01-02", "2024-01-03", None, "2024-02-01")})
    fs = store(FeatureView("v", ["k"], ["x"], created_timestamp_column="created"), df)
    ent = pd.DataFrame({"k": [1], "event_timestamp": ts("2024-01-05")})
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [2.0]   # created 01-03 beats 01-02 and NULL
    fs.ingest("v", pd.DataFrame({"k": [1], "x": [9.0], "event_timestamp": ts("2024-01-01"),
                                 "created": ts("2024-01-03")}))
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [9.0]   # full tie: the last ingested wins


# 6. whole-row choice: a NULL in the chosen row stays NULL
def test_rule6_no_fallback(store):
    df = pd.DataFrame({"k": [1, 1], "x": [1.0, None], "y": [10, 20], "event_timestamp": ts("2024-01-01", "2024-01-02")})
    fs = store(FeatureView("v", ["k"], ["x", "y"]), df)
    out = fs.get_historical_features(pd.DataFrame({"k": [1], "event_timestamp": ts("2024-01-03")}), ["v:x", "v:y"])
    assert values(out, "x") == [None] and values(out, "y") == [20]


# 7. no candidate: NULL features, row kept
def test_rule7_no_candidate(driver):
    ent = pd.DataFrame({"driver_id": [1, 99], "event_timestamp": ts("2024-01-01 09:00", "2024-01-02")})
    assert values(driver.get_historical_features(ent, ["d:trips"]), "trips") == [None, None]


# 8. filter_by_created_timestamp: created <= entity time too; NULL created excluded
def test_rule8_created_filter(store):
    df = pd.DataFrame({"k": [1, 1, 1], "x": [1.0, 2.0, 3.0],
                       "event_timestamp": ts("2024-01-01", "2024-01-02", "2024-01-03"),
                       "created": ts("2024-01-01", "2024-01-05", None)})
    fs = store(FeatureView("v", ["k"], ["x"], created_timestamp_column="created"), df)
    ent = pd.DataFrame({"k": [1, 1], "event_timestamp": ts("2024-01-04", "2024-01-05")})
    # without the filter both rows see the 01-03 row; with it, 01-04 sees only row 1 (row 2 created later,
    # row 3 has no created time), and 01-05 sees row 2 (created exactly then)
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [3.0, 3.0]
    assert values(fs.get_historical_features(ent, ["v:x"], filter_by_created_timestamp=True), "x") == [1.0, 2.0]
    # among candidates the latest *event* wins, not the latest created: row 4 (event 01-02 01:00, created
    # 01-04) beats row 5 (event 01-01 12:00, created 01-04 12:00) at 01-04 12:00
    fs.ingest("v", pd.DataFrame({"k": [1, 1], "x": [4.0, 5.0], "event_timestamp": ts("2024-01-02 01:00", "2024-01-01 12:00"),
                                 "created": ts("2024-01-04", "2024-01-04 12:00")}))
    ent = pd.DataFrame({"k": [1], "event_timestamp": ts("2024-01-04 12:00")})
    assert values(fs.get_historical_features(ent, ["v:x"], filter_by_created_timestamp=True), "x") == [4.0]


# 9. NULL keys never match
def test_rule9_null_keys(store):
    df = pd.DataFrame({"k": pd.array([None, 1], dtype="Int64"), "x": [1.0, 2.0], "event_timestamp": ts("2024-01-01", "2024-01-01")})
    fs = store(FeatureView("v", ["k"], ["x"]), df)
    ent = pd.DataFrame({"k": pd.array([None, 1], dtype="Int64"), "event_timestamp": ts("2024-01-02", "2024-01-02")})
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [None, 2.0]


# 10. several views on their own keys; clash is an error unless full_feature_names (view__feature)
def test_rule10_views_and_names(store):
    fs = store()
    fs.apply(FeatureView("a", ["user"], ["score"]),
             pd.DataFrame({"user": [1], "score": [0.5], "event_timestamp": ts("2024-01-01")}))
    fs.apply(FeatureView("b", ["shop"], ["score"]),
             pd.DataFrame({"shop": ["s1"], "score": [7.0], "event_timestamp": ts("2024-01-01")}))
    ent = pd.DataFrame({"user": [1], "shop": ["s1"], "event_timestamp": ts("2024-01-02")})
    with pytest.raises(FeatureStoreError, match="'score' of b:score clashes with a:score"):
        fs.get_historical_features(ent, ["a:score", "b:score"])
    out = fs.get_historical_features(ent, ["a:score", "b:score"], full_feature_names=True)
    assert list(out.columns) == ["user", "shop", "event_timestamp", "a__score", "b__score"]
    assert values(out, "a__score") == [0.5] and values(out, "b__score") == [7.0]


# 11. composite keys never collide: (1, 23) and (12, 3) are different
def test_rule11_composite_keys(store):
    df = pd.DataFrame({"a": [1, 12], "b": [23, 3], "x": [1.0, 2.0], "event_timestamp": ts("2024-01-01", "2024-01-02")})
    fs = store(FeatureView("v", ["a", "b"], ["x"]), df)
    ent = pd.DataFrame({"a": [1, 12, 123], "b": [23, 3, 0], "event_timestamp": ts("2024-01-03", "2024-01-03", "2024-01-03")})
    assert values(fs.get_historical_features(ent, ["v:x"]), "x") == [1.0, 2.0, None]
    fs.materialize(T("2024-01-01"), T("2024-01-03"))
    online = fs.get_online_features(["v:x"], ent[["a", "b"]], at=T("2024-01-03"))
    assert values(online.values, "x") == [1.0, 2.0, None]


# 12. online: greatest (event, created) kept; backfill never overwrites; late rows picked up; ttl at request time
def test_rule12_online_store(store):
    view = FeatureView("v", ["k"], ["x"], created_timestamp_column="created", ttl=timedelta(hours=2))
    fs = store(view, pd.DataFrame({"k": [1, 2], "x": [1.0, 5.0], "event_timestamp": ts("2024-01-01 10:00", "2024-01-01 10:00"),
                                   "created": ts("2024-01-01 10:00", "2024-01-01 10:00")}))
    fs.materialize_incremental(T("2024-01-01 11:00"))
    # a backfill of an older event for key 1 arrives, and a late row for key 2 inside the materialised window
    fs.ingest("v", pd.DataFrame({"k": [1, 2], "x": [0.0, 6.0], "event_timestamp": ts("2024-01-01 09:00", "2024-01-01 10:30"),
                                 "created": ts("2024-01-01 11:30", "2024-01-01 11:30")}))
    fs.materialize_incremental(T("2024-01-01 11:00"))
    r = fs.get_online_features(["v:x"], [{"k": 1}, {"k": 2}, {"k": 3}], at=T("2024-01-01 12:00"))
    assert values(r.values, "x") == [1.0, 6.0, None]          # backfill ignored, late row picked up
    assert r.status["x"].tolist() == ["present", "present", "missing"]
    r = fs.get_online_features(["v:x"], [{"k": 1}, {"k": 2}], at=T("2024-01-01 12:00:00.000001"))
    assert r.status["x"].tolist() == ["expired", "present"]   # key 1 is 2 h + 1 us old; ttl is inclusive
    assert values(r.values, "x") == [None, 6.0]
    hist = fs.get_historical_features(pd.DataFrame({"k": [1, 2, 3], "event_timestamp": ts(*["2024-01-01 11:00"] * 3)}), ["v:x"])
    online = fs.get_online_features(["v:x"], [{"k": 1}, {"k": 2}, {"k": 3}], at=T("2024-01-01 11:00"))
    assert values(hist, "x") == values(online.values, "x") == [1.0, 6.0, None]
