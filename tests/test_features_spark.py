"""The Spark offline engine beyond the shared rule and property tests: the same frames as DuckDB (values,
dtypes, index) on a larger random table in one query each, types, key promotion, the plan, the exports, the
settings' errors. One local SparkSession for the module."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from spark_support import spark_session  # noqa: F401  (a fixture)
from features_reference import pit_join

from workbench.errors import FeatureStoreError
from workbench.features import FeatureStore, FeatureView


def both(view: FeatureView, batches: list[pd.DataFrame]) -> tuple[FeatureStore, FeatureStore]:
    stores = FeatureStore(), FeatureStore(engine="spark")
    for fs in stores:
        fs.apply(view, batches[0])
        for b in batches[1:]:
            fs.ingest(view.name, b)
    return stores


def random_batches(rng: np.random.Generator, n: int, batches: int = 3) -> list[pd.DataFrame]:
    """Composite keys with NULLs, a minute grid (ties, ttl edges), NULL created times and values."""
    out = []
    for _ in range(batches):
        k1 = pd.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 6, n)), dtype="Int64")
        out.append(pd.DataFrame({
            "k1": k1, "k2": rng.choice(["a", "b"], n),
            "v": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "n": pd.array(rng.integers(0, 100, n), dtype="Int64"),
            "event_timestamp": pd.Timestamp("2024-03-10") + pd.to_timedelta(rng.integers(0, 60, n), unit="min"),
            "created": (pd.Timestamp("2024-03-10") + pd.to_timedelta(rng.integers(0, 90, n), unit="min"))
            .where(rng.random(n) > 0.2)}))
    return out


def random_entities(rng: np.random.Generator, n: int) -> pd.DataFrame:
    ts = pd.Timestamp("2024-03-10") + pd.to_timedelta(rng.integers(-5, 70, n), unit="min")
    return pd.DataFrame({"k1": pd.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 7, n)), dtype="Int64"),
                         "k2": rng.choice(["a", "b", "c"], n), "event_timestamp": ts.where(rng.random(n) > 0.03)},
                        index=rng.permutation(n) + 100)


def test_same_frames_as_duckdb_and_the_reference(spark_session):
    ttl = timedelta(minutes=7)   # no ttl: the property tests
    rng = np.random.default_rng(7)
    bs = random_batches(rng, 150)
    ent = random_entities(rng, 300)
    view = FeatureView("fv", ["k1", "k2"], ["v", "n"], created_timestamp_column="created", ttl=ttl)
    duck, spark = both(view, bs)
    with duck, spark:
        for by_created in (False, True):
            got = spark.get_historical_features(ent, ["fv:v", "fv:n"], filter_by_created_timestamp=by_created)
            pd.testing.assert_frame_equal(got, duck.get_historical_features(
                ent, ["fv:v", "fv:n"], filter_by_created_timestamp=by_created))
            want = pit_join(bs, ent, entities=["k1", "k2"], features=["v", "n"], created="created", ttl=ttl,
                            filter_by_created=by_created)
            for f in ("v", "n"):
                assert [None if pd.isna(x) else float(x) for x in got[f]] == \
                       [None if pd.isna(x) else float(x) for x in want[f]], (f, by_created)
        wins = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
        for feature in ("fv:v", "fv:n"):
            got = spark.get_window_features(ent, feature, wins)
            want = duck.get_window_features(ent, feature, wins)
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)


def test_column_types_and_key_promotion(spark_session):
    df = pd.DataFrame({"k": [1, 2], "i": pd.array([5, None], dtype="Int64"), "s": ["x", None], "b": [True, False],
                       "t": pd.to_datetime(["2023-05-01 01:02:03.000004", "2023-06-01"],
                                           format="ISO8601").as_unit("us"),
                       "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-01"]).as_unit("us")})
    view = FeatureView("v", ["k"], ["i", "s", "b", "t"])
    duck, spark = both(view, [df])
    # float entity keys: 1.0 matches key 1 and 1.5 matches nothing, as DuckDB compares them
    ent = pd.DataFrame({"k": [1.0, 1.5, 2.0], "event_timestamp": pd.to_datetime(["2024-01-02"] * 3)})
    with duck, spark:
        refs = ["v:i", "v:s", "v:b", "v:t"]
        got = spark.get_historical_features(ent, refs)
        pd.testing.assert_frame_equal(got, duck.get_historical_features(ent, refs))
        assert got["i"].tolist()[0] == 5 and pd.isna(got["s"].iloc[1])


def test_plan_is_a_partitioned_window_not_a_range_join(spark_session):
    df = pd.DataFrame({"k": [1], "x": [1.0], "event_timestamp": pd.to_datetime(["2024-01-01"])})
    with FeatureStore(engine="spark") as fs:
        fs.apply(FeatureView("v", ["k"], ["x"]), df)
        plans: list[str] = []
        fs.spark.historical_features(pd.DataFrame({"k": [1], "event_timestamp": pd.to_datetime(["2024-01-02"])}),
                                     ["v:x"], explain=plans)
    assert len(plans) == 1
    assert "Window" in plans[0] and "hashpartitioning(_wb_k0" in plans[0]
    assert not any(j in plans[0] for j in ("NestedLoopJoin", "CartesianProduct", "SortMergeJoin"))


def test_exported_once_per_version_and_removed_at_close(spark_session):
    df = pd.DataFrame({"k": [1], "x": [1.0], "event_timestamp": pd.to_datetime(["2024-01-01"])})
    ent = pd.DataFrame({"k": [1], "event_timestamp": pd.to_datetime(["2024-01-03"])})
    fs = FeatureStore(engine="spark")
    fs.apply(FeatureView("v", ["k"], ["x"]), df)
    fs.get_historical_features(ent, ["v:x"])
    folder = fs.spark.dir
    first = sorted(p.name for p in folder.iterdir())
    fs.get_historical_features(ent, ["v:x"])
    assert sorted(p.name for p in folder.iterdir()) == first == ["fv_v_v1_r1.parquet"]
    fs.ingest("v", df.assign(x=2.0, event_timestamp=pd.to_datetime(["2024-01-02"])))
    assert fs.get_historical_features(ent, ["v:x"])["x"].tolist() == [2.0]   # a new export, the old one gone
    assert sorted(p.name for p in folder.iterdir()) == ["fv_v_v1_r2.parquet"]
    fs.close()
    assert not folder.exists()


def test_settings_errors(spark_session, monkeypatch):
    from workbench.features import spark_engine

    with pytest.raises(FeatureStoreError, match=r"unknown offline engine 'sprak' \(known: duckdb, spark\)"):
        FeatureStore(engine="sprak")
    with pytest.raises(FeatureStoreError, match="need engine='spark'"):
        FeatureStore(spark_master="local[1]")
    monkeypatch.delenv(spark_engine.DIR_ENV, raising=False)
    with pytest.raises(FeatureStoreError, match="spark://h:7077 needs spark_dir"):
        FeatureStore(engine="spark", spark_master="spark://h:7077")
    with pytest.raises(FeatureStoreError, match=r"already runs in this process; asked for local\[1\]"):
        spark_engine.session("local[1]")
    monkeypatch.setenv(spark_engine.MASTER_ENV, "local[3]")
    assert spark_engine.resolve_master() == "local[3]" and spark_engine.resolve_master("local") == "local"


def test_engines_bench_compares_frames_and_writes_json_and_png(tmp_path):
    """The benchmark's plumbing on small data (DuckDB and merge_asof; the Spark child runs in the CLI)."""
    from workbench.runners.features import run_features

    res = run_features("engines-bench", tmp_path, n_entities=300, n_features=3000, updates_per_key=10,
                       engines=("duckdb", "merge_asof"), progress=lambda m: None)
    rows = {r["method"]: r for r in res.payload["results"]}
    assert rows["merge_asof"]["identical"] and rows["merge_asof"]["differing_rows"] == 0
    assert rows["duckdb"]["rows"] == 300 and rows["duckdb"]["rows_per_s"] > 0
    assert (tmp_path / "engines-bench.json").is_file() and (tmp_path / "engines_bench.png").is_file()
    with pytest.raises(FeatureStoreError, match="unknown engine"):
        run_features("engines-bench", tmp_path, engines=("duckdb", "polars"))
