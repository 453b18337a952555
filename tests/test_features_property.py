"""Property tests: the joins and windows of both offline engines (DuckDB; Spark in local mode, one session for
the module, fewer examples) and the online store against the brute-force reference.

Random small tables on a coarse minute grid, so that equal event times, equal created times, ttl edges
(feature time exactly entity time - ttl) and entity time == feature time happen often; NULL keys, NULL
created times and NULL feature values; every timestamp column in a random zone (naive = UTC, UTC, +05:30,
America/New_York) and entity columns sometimes with a different zone per row.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from spark_support import engine, spark_session  # noqa: F401  (fixtures)
from features_reference import pit_join, utc, window_aggregates
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.features import FeatureStore, FeatureView

BASE = pd.Timestamp("2024-03-10 06:00")  # a US DST change day, to catch zone arithmetic
ZONES = [None, "UTC", "Asia/Kolkata", "America/New_York"]
DTYPES = {"k1": "BIGINT", "k2": "BIGINT", "v": "DOUBLE", "w": "DOUBLE"}
# Spark answers a tiny join in about a second (a few stages each), DuckDB in milliseconds
EXAMPLES = {"duckdb": 50, "spark": 6}


def examples(engine: str) -> settings:
    return settings(max_examples=EXAMPLES[engine], deadline=None, suppress_health_check=[HealthCheck.too_slow])


minutes = st.integers(0, 5)
key1 = st.one_of(st.none(), st.integers(1, 3))


def in_zone(instants: list[pd.Timestamp | None], zone: str | None) -> pd.Series:
    s = pd.Series(pd.to_datetime(instants), dtype="datetime64[us]")
    return s if zone is None else s.dt.tz_localize("UTC").dt.tz_convert(zone)


@st.composite
def batches(draw, with_created: bool):
    out, rid = [], 0
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 8))
        rows = [dict(k1=draw(key1), k2=draw(st.integers(0, 1)), t=draw(minutes),
                     c=draw(st.one_of(st.none(), minutes)), v=draw(st.one_of(st.none(), st.just(1.0))))
                for _ in range(n)]
        df = pd.DataFrame({
            "k1": pd.array([r["k1"] for r in rows], dtype="Int64"),
            "k2": pd.array([r["k2"] for r in rows], dtype="Int64"),
            "v": [None if r["v"] is None else float(rid + i) + 0.5 for i, r in enumerate(rows)],
            "w": [float(rid + i) * 10 for i in range(n)],
            "event_timestamp": in_zone([BASE + timedelta(minutes=r["t"]) for r in rows], draw(st.sampled_from(ZONES))),
        })
        df["v"] = df["v"].astype("float64")
        if with_created:
            df["created"] = in_zone([None if r["c"] is None else BASE + timedelta(minutes=r["c"]) for r in rows],
                                    draw(st.sampled_from(ZONES)))
        rid += n
        out.append(df)
    return out


@st.composite
def entity_frames(draw, min_rows: int = 0):
    n = draw(st.integers(min_rows, 8))
    ts = [None if draw(st.integers(0, 20)) == 0 else BASE + timedelta(minutes=draw(minutes)) for _ in range(n)]
    if draw(st.booleans()):
        col = in_zone(ts, draw(st.sampled_from(ZONES)))
    else:  # one zone per row, in an object column
        col = pd.Series([None if t is None else (t if (z := draw(st.sampled_from(ZONES))) is None
                                                 else t.tz_localize("UTC").tz_convert(z)) for t in ts], dtype=object)
    return pd.DataFrame({"k1": pd.array([draw(key1) for _ in range(n)], dtype="Int64"),
                         "k2": pd.array([draw(st.integers(0, 1)) for _ in range(n)], dtype="Int64"),
                         "event_timestamp": col})


ttls = st.one_of(st.none(), st.integers(0, 3).map(lambda m: timedelta(minutes=m)))


def store_with(bs: list[pd.DataFrame], view: FeatureView, engine: str) -> FeatureStore:
    fs = FeatureStore(engine=engine)
    fs.apply(view)
    for b in bs:
        fs.ingest(view.name, b)
    return fs


def norm(values) -> list:
    return [None if v is None or pd.isna(v) else float(v) for v in values]


def test_historical_join_matches_reference(engine):
    @examples(engine)
    @given(st.booleans().flatmap(lambda c: st.tuples(st.just(c), batches(c))), entity_frames(), ttls, st.booleans(),
           st.booleans())
    def check(created_and_batches, entity_df, ttl, by_created, composite):
        historical_matches(engine, created_and_batches, entity_df, ttl, by_created, composite)

    check()


def historical_matches(engine, created_and_batches, entity_df, ttl, by_created, composite):
    with_created, bs = created_and_batches
    keys = ["k1", "k2"] if composite else ["k1"]
    view = FeatureView("fv", keys, ["v", "w"], created_timestamp_column="created" if with_created else None,
                       ttl=ttl, dtypes=DTYPES)
    with store_with(bs, view, engine) as fs:
        got = fs.get_historical_features(entity_df, ["fv:v", "fv:w"], filter_by_created_timestamp=by_created)
    want = pit_join(bs, entity_df, entities=keys, features=["v", "w"],
                    created="created" if with_created else None, ttl=ttl, filter_by_created=by_created)
    assert len(got) == len(entity_df)
    assert list(got.columns[:3]) == list(entity_df.columns)
    for f in ("v", "w"):
        assert norm(got[f]) == norm(want[f]), f


def test_created_filter_matches_reference(engine):
    """Rule 8 on its own, so that most examples exercise the window-function path."""
    @examples(engine)
    @given(batches(True), entity_frames(min_rows=3), ttls, st.booleans())
    def check(bs, entity_df, ttl, composite):
        created_filter_matches(engine, bs, entity_df, ttl, composite)

    check()


def created_filter_matches(engine, bs, entity_df, ttl, composite):
    keys = ["k1", "k2"] if composite else ["k1"]
    view = FeatureView("fv", keys, ["v", "w"], created_timestamp_column="created", ttl=ttl, dtypes=DTYPES)
    with store_with(bs, view, engine) as fs:
        got = fs.get_historical_features(entity_df, ["fv:v", "fv:w"], filter_by_created_timestamp=True)
    want = pit_join(bs, entity_df, entities=keys, features=["v", "w"], created="created", ttl=ttl,
                    filter_by_created=True)
    for f in ("v", "w"):
        assert norm(got[f]) == norm(want[f]), f


def test_window_aggregates_match_reference(engine):
    @examples(engine)
    @given(batches(True), entity_frames(), st.integers(1, 8), st.booleans())
    def check(bs, entity_df, window_min, composite):
        windows_match(engine, bs, entity_df, window_min, composite)

    check()


def windows_match(engine, bs, entity_df, window_min, composite):
    keys = ["k1", "k2"] if composite else ["k1"]
    view = FeatureView("fv", keys, ["v", "w"], created_timestamp_column="created", dtypes=DTYPES)
    window = timedelta(minutes=window_min)
    with store_with(bs, view, engine) as fs:
        got = fs.get_window_features(entity_df, "fv:v", {"w": window})
    want = window_aggregates(bs, entity_df, entities=keys, feature="v", window=window, created="created")
    assert got["v_count_w"].tolist() == want["count"].tolist()
    for a in ("sum", "mean", "min", "max"):
        g, w = norm(got[f"v_{a}_w"]), norm(want[a])
        assert [x is None for x in g] == [x is None for x in w], a
        assert all(x is None or abs(x - y) < 1e-9 for x, y in zip(g, w)), a


def test_online_equals_historical_after_materialising(engine):
    """Rule 12: materialise in two incremental steps with late rows ingested in between; read at T."""
    @examples(engine)
    @given(batches(True), batches(True), ttls, minutes, minutes)
    def check(first, late, ttl, t_mid, t_end):
        online_matches(engine, first, late, ttl, t_mid, t_end)

    check()


def online_matches(engine, first, late, ttl, t_mid, t_end):
    t_mid, t_end = sorted((t_mid, t_end))
    mid, end = BASE + timedelta(minutes=t_mid), BASE + timedelta(minutes=t_end)
    view = FeatureView("fv", ["k1", "k2"], ["v", "w"], created_timestamp_column="created", ttl=ttl, dtypes=DTYPES)
    with store_with(first, view, engine) as fs:
        fs.materialize_incremental(mid)
        for b in late:
            fs.ingest("fv", b)
        fs.materialize_incremental(end)
        entities = pd.DataFrame({"k1": pd.array([1, 2, 3, None] * 2, dtype="Int64"),
                                 "k2": pd.array([0] * 4 + [1] * 4, dtype="Int64")})
        online = fs.get_online_features(["fv:v", "fv:w"], entities, at=end)
        offline = fs.get_historical_features(entities.assign(event_timestamp=end), ["fv:v", "fv:w"])
    for f in ("v", "w"):
        assert norm(online.values[f]) == norm(offline[f]), f
    # a value is present exactly when the offline join found a row (w is never NULL)
    assert (online.status["w"] == "present").tolist() == offline["w"].notna().tolist()
    assert utc(end) is not None
