"""The online store: per key, the latest value of each view, served with a ttl check at request time.

Materialisation merges candidate rows into table ``online_<view>_v<version>`` keeping, per key, the row with
the greatest (event time, created time, ingestion number) -- the join's own order -- so an older backfill
never overwrites a newer value and repeating a materialisation changes nothing.

``materialize(start, end)`` merges rows whose event time lies in [start, end] (both inclusive) and leaves the
incremental watermark alone. ``materialize_incremental(end)`` merges every row not merged by an earlier
incremental run: event time in (previous end, end], or ingested since the previous run with event time at most
``end`` -- so late rows, whose event time falls in an already-materialised window, are picked up.

Reads are planned once per feature list (``ServingPlan``: views, versions, outputs, the read SQL), so a request
runs one parameterised query per view and no registry or catalog query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.offline import ROW, OfflineStore
from workbench.features.pit import plan
from workbench.features.timestamps import to_utc_timestamp
from workbench.features.view import FeatureView, quote

PRESENT, MISSING, EXPIRED = "present", "missing", "expired"


def online_table(store: OfflineStore, name: str) -> str:
    return quote(f"online_{name}_v{store.version(name)}")


def _merge(store: OfflineStore, view: FeatureView, where: str, params: list[Any]) -> int:
    """Merge the view's rows matching ``where`` into its online table; returns how many rows were considered."""
    con, table, online = store.con, store.table(view.name), online_table(store, view.name)
    keys = [quote(k) for k in view.entities]
    feats = [quote(f) for f in view.features]
    created = quote(view.created_timestamp_column) if view.created_timestamp_column else "NULL::TIMESTAMP"
    defs = ", ".join([f"{quote(c)} {view.dtypes[c]}" for c in (*view.entities, *view.features)]
                     + ["_wb_fts TIMESTAMP", "_wb_created TIMESTAMP", f"{ROW} BIGINT"])
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {online} ({defs})")
        n = con.execute(f"SELECT count(*) FROM {table} WHERE {not_null} AND ({where})", params).fetchall()[0][0]
        con.execute(f"""CREATE OR REPLACE TABLE {online} AS
            SELECT * FROM (
                SELECT * FROM {online}
                UNION ALL
                SELECT {', '.join(keys + feats)}, {quote(view.timestamp_field)}, {created}, {ROW}
                FROM {table} WHERE {not_null} AND ({where})
            ) QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}
                                         ORDER BY _wb_fts DESC, _wb_created DESC NULLS LAST, {ROW} DESC) = 1""",
                    params)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(n)


def event_window(start: datetime, end: datetime) -> list[Any]:
    """[start, end] as the UTC parameters of ``BETWEEN ? AND ?``; a start after the end is an error."""
    s, e = to_utc_timestamp(start), to_utc_timestamp(end)
    if s > e:
        raise FeatureStoreError(f"materialize: start {s} is after end {e}")
    return [s.to_pydatetime(), e.to_pydatetime()]


def materialize(store: OfflineStore, start: datetime, end: datetime, names: Iterable[str] | None = None) -> dict[str, int]:
    """Merge rows with event time in [start, end] into the online store; returns rows considered per view."""
    window = event_window(start, end)
    views = [store.view(name) for name in names or store.names()]
    return {v.name: _merge(store, v, f"{quote(v.timestamp_field)} BETWEEN ? AND ?", window) for v in views}


def materialize_incremental(store: OfflineStore, end: datetime, names: Iterable[str] | None = None) -> dict[str, int]:
    """Merge everything not merged by a previous incremental run, up to event time ``end`` (inclusive)."""
    e = to_utc_timestamp(end).to_pydatetime()
    out = {}
    for name in names or store.names():
        view, state = store.view(name), store.state(name)
        ts = quote(view.timestamp_field)
        until, last_row = state["materialized_until"], state["materialized_row"]
        if until is None:
            where, params = f"{ts} <= ?", [e]
        else:
            where, params = f"{ts} <= ? AND ({ts} > ? OR {ROW} > ?)", [e, until, last_row]
        top = store.con.execute(f"SELECT max({ROW}) FROM {store.table(name)}").fetchall()[0][0]
        out[name] = _merge(store, view, where, params)
        new_until = e if until is None else max(until, e)
        store.set_state(name, materialized_until=new_until, materialized_row=-1 if top is None else top)
    return out


@dataclass(frozen=True)
class OnlineResponse:
    """Feature values in request order, and per value its status: present, missing or expired.

    ``missing``: NULL key, nothing materialised for the key, or only a value newer than the request time
    (the online store keeps one value per key and cannot answer for earlier times). ``expired``: older than
    the view's ttl at the request time (inclusive bound, as in the offline join). A ``present`` value may be
    NULL when the latest row holds NULL.
    """

    values: pd.DataFrame
    status: pd.DataFrame

    def to_dict(self) -> dict[str, list]:
        return {c: self.values[c].tolist() for c in self.values.columns}


@dataclass(frozen=True)
class ServingView:
    """One view of a serving plan, resolved from the registry once: the definition (keys, dtypes, ttl), its
    version, the features asked and their output names, and the parameterised read of its DuckDB online table
    (key lists and the key count as parameters; the table is named by the version, so no catalog lookup)."""

    view: FeatureView
    version: int
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    sql: str


@dataclass(frozen=True)
class ServingPlan:
    """What a request for one feature list needs, so that serving it queries no registry (cached by
    ``FeatureStore`` per feature list and ``full_feature_names``; a registered or changed view clears it)."""

    refs: tuple[str, ...]
    full_feature_names: bool
    views: tuple[ServingView, ...]
    keys: tuple[str, ...]

    def check(self, store: OfflineStore, rows: pd.DataFrame) -> None:
        """The request-dependent checks of ``pit.plan`` (join keys present, no output clashing with an entity
        column); on a failure ``plan`` itself runs, so the error is the very one an unplanned read gives."""
        cols = set(rows.columns) | {"event_timestamp"}
        if any(k not in cols for k in self.keys) or any(o in cols for v in self.views for o in v.outputs):
            plan(store, _probe(rows), list(self.refs), self.full_feature_names)


def _probe(rows: pd.DataFrame) -> pd.DataFrame:
    """An empty frame with the columns ``plan`` checks against (the request rows plus the request time)."""
    return pd.DataFrame(columns=list(dict.fromkeys([*rows.columns, "event_timestamp"])))


def _read_sql(view: FeatureView, version: int, features: Sequence[str]) -> str:
    # Request keys come in as one list per key column, zipped by unnest; _wb_i is the key's position. The
    # comparison o.k = e.k casts as the old join on a registered frame did (a float key 1.5 never matches 2).
    keys = [quote(k) for k in view.entities]
    unnest = ", ".join(f"unnest(?) AS {k}" for k in keys)
    cond = " AND ".join(f"e.{k} = o.{k}" for k in keys)
    feats = ", ".join(f"o.{quote(f)} AS _wb_f{i}" for i, f in enumerate(features))
    online = quote(f"online_{view.name}_v{version}")
    return (f"SELECT e._wb_i, o._wb_fts, {feats} FROM (SELECT {unnest}, unnest(range(?)) AS _wb_i) e "
            f"JOIN {online} o ON {cond}")


def serving_plan(store: OfflineStore, refs: Sequence[str], rows: pd.DataFrame,
                 full_feature_names: bool = False) -> ServingPlan:
    """Resolve ``refs`` against the registry (the queries a cached plan saves every later request)."""
    views = []
    for req in plan(store, _probe(rows), list(refs), full_feature_names):
        version = store.version(req.view.name)
        views.append(ServingView(req.view, version, req.features, req.outputs,
                                 _read_sql(req.view, version, req.features)))
    keys = tuple(dict.fromkeys(k for v in views for k in v.view.entities))
    return ServingPlan(tuple(refs), full_feature_names, tuple(views), keys)


def request_rows(entity_rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = entity_rows if isinstance(entity_rows, pd.DataFrame) else pd.DataFrame(list(entity_rows))
    return rows.reset_index(drop=True)


def request_time(at: datetime | None) -> pd.Timestamp:
    return to_utc_timestamp(at if at is not None else pd.Timestamp.now(tz="UTC")).as_unit("us")


def unique_keys(view: FeatureView, rows: pd.DataFrame) -> tuple[list[tuple], np.ndarray]:
    """The distinct non-NULL key tuples of ``rows`` and, per row, the index of its tuple (-1: a NULL part)."""
    part = rows[list(view.entities)]
    kv = part.astype(object).to_numpy()
    ok = ~pd.isna(part).any(axis=1).to_numpy()
    index: dict[tuple, int] = {}
    pos = np.full(len(rows), -1, dtype=np.int64)
    for i in np.flatnonzero(ok):
        pos[i] = index.setdefault(tuple(kv[i]), len(index))
    return list(index), pos


def respond(plan_: ServingPlan, rows: pd.DataFrame, now_us: int,
            fetched: Sequence[tuple[np.ndarray, list[np.ndarray]]],
            cls: type[OnlineResponse] = OnlineResponse, **extra: Any) -> OnlineResponse:
    """The response from, per view, each row's event time (int64 us, int64 min = nothing stored) and its
    feature values (object arrays): ttl checked at request time ``now_us``, inclusive, as the offline join."""
    values = {k: rows[k].copy() for k in plan_.keys}
    status = {}
    for sv, (fts, got) in zip(plan_.views, fetched):
        found = fts != np.iinfo(np.int64).min
        not_future = found & (fts <= now_us)
        fresh = not_future & (now_us - fts <= sv.view.ttl_us) if sv.view.ttl is not None else not_future
        st = np.where(fresh, PRESENT, np.where(not_future, EXPIRED, MISSING))
        for o, col in zip(sv.outputs, got):
            values[o] = np.where(fresh, col, None)
            status[o] = st
    return cls(pd.DataFrame(values, index=rows.index), pd.DataFrame(status, index=rows.index), **extra)


def online_features(store: OfflineStore, plan_: ServingPlan,
                    entity_rows: pd.DataFrame | Sequence[Mapping[str, Any]],
                    at: datetime | None = None) -> OnlineResponse:
    """Serve ``plan_`` for ``entity_rows`` (a DataFrame or a list of dicts) at request time ``at`` (default
    now): one parameterised query per view, no registry or catalog query."""
    rows = request_rows(entity_rows)
    plan_.check(store, rows)
    now = request_time(at)
    fetched = []
    for sv in plan_.views:
        fts = np.full(len(rows), np.iinfo(np.int64).min, dtype=np.int64)
        got = [np.full(len(rows), None, dtype=object) for _ in sv.features]
        unique, pos = unique_keys(sv.view, rows)
        if unique:
            params = [[t[j] for t in unique] for j in range(len(sv.view.entities))] + [len(unique)]
            try:
                res = store.con.execute(sv.sql, params).df()
            except duckdb.CatalogException:   # nothing materialised yet: the table does not exist
                res = None
            if res is not None and len(res):
                # per unique key, its row in res (-1: not stored); then per request row through pos
                at_key = np.full(len(unique), -1, dtype=np.int64)
                at_key[res["_wb_i"].to_numpy()] = np.arange(len(res))
                row_of = np.where(pos >= 0, at_key[np.maximum(pos, 0)], -1)
                hit = row_of >= 0
                stamps = pd.to_datetime(res["_wb_fts"]).to_numpy(dtype="datetime64[us]").astype(np.int64)
                fts[hit] = stamps[row_of[hit]]
                for j, col in enumerate(got):
                    col[hit] = res[f"_wb_f{j}"].astype(object).to_numpy()[row_of[hit]]
        fetched.append((fts, got))
    return respond(plan_, rows, _epoch_us(now), fetched)


def _epoch_us(t: pd.Timestamp) -> int:
    """A naive-UTC timestamp as integer microseconds since the epoch."""
    return int(t.to_datetime64().astype("datetime64[us]").astype(np.int64))
