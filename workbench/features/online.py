"""The online store: per key, the latest value of each view, served with a ttl check at request time.

Materialisation merges candidate rows into table ``online_<view>_v<version>`` keeping, per key, the row with
the greatest (event time, created time, ingestion number) -- the join's own order -- so an older backfill
never overwrites a newer value and repeating a materialisation changes nothing.

``materialize(start, end)`` merges rows whose event time lies in [start, end] (both inclusive) and leaves the
incremental watermark alone. ``materialize_incremental(end)`` merges every row not merged by an earlier
incremental run: event time in (previous end, end], or ingested since the previous run with event time at most
``end`` -- so late rows, whose event time falls in an already-materialised window, are picked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

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


def materialize(store: OfflineStore, start: datetime, end: datetime, names: Iterable[str] | None = None) -> dict[str, int]:
    """Merge rows with event time in [start, end] into the online store; returns rows considered per view."""
    s, e = to_utc_timestamp(start), to_utc_timestamp(end)
    if s > e:
        raise FeatureStoreError(f"materialize: start {s} is after end {e}")
    out = {}
    for name in names or store.names():
        view = store.view(name)
        ts = quote(view.timestamp_field)
        out[name] = _merge(store, view, f"{ts} BETWEEN ? AND ?", [s.to_pydatetime(), e.to_pydatetime()])
    return out


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


def online_features(store: OfflineStore, refs: Sequence[str], entity_rows: pd.DataFrame | Sequence[Mapping[str, Any]],
                    at: datetime | None = None, full_feature_names: bool = False) -> OnlineResponse:
    """Serve ``refs`` for ``entity_rows`` (a DataFrame or a list of dicts) at request time ``at`` (default now)."""
    rows = entity_rows if isinstance(entity_rows, pd.DataFrame) else pd.DataFrame(list(entity_rows))
    rows = rows.reset_index(drop=True)
    now = to_utc_timestamp(at if at is not None else pd.Timestamp.now(tz="UTC")).as_unit("us")
    probe = rows.copy()
    probe["event_timestamp"] = now
    reqs = plan(store, probe, list(refs), full_feature_names)
    keys = list(dict.fromkeys(k for r in reqs for k in r.view.entities))
    values = rows[keys].copy()
    status = pd.DataFrame(index=rows.index)
    frame = rows[keys].copy()
    frame["_wb_erow"] = range(len(frame))
    ent = f"_wb_online_{id(frame)}"
    store.con.register(ent, frame)
    try:
        for req in reqs:
            v = req.view
            online = online_table(store, v.name)
            exists = store.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                                       [online.strip('"')]).fetchall()[0][0]
            if exists:
                cond = " AND ".join(f"e.{quote(k)} = o.{quote(k)}" for k in v.entities)
                feats = ", ".join(f"o.{quote(f)} AS {quote(o)}" for f, o in zip(req.features, req.outputs))
                got = store.con.execute(f"SELECT o._wb_fts, {feats} FROM {ent} e LEFT JOIN {online} o ON {cond} "
                                        "ORDER BY e._wb_erow").df()
                fts = pd.to_datetime(got["_wb_fts"]).to_numpy(dtype="datetime64[us]")
            else:
                got = pd.DataFrame({o: [None] * len(rows) for o in req.outputs})
                fts = np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[us]")
            found = ~np.isnat(fts)
            not_future = found & (fts <= now.to_datetime64())
            if v.ttl is not None:
                age_us = (now.to_datetime64() - fts).astype("timedelta64[us]").astype(np.int64)
                fresh = not_future & (age_us <= v.ttl_us)
            else:
                fresh = not_future
            st = np.where(fresh, PRESENT, np.where(not_future, EXPIRED, MISSING))
            for o in req.outputs:
                values[o] = got[o].astype(object).where(fresh, None).to_numpy()
                status[o] = st
    finally:
        store.con.unregister(ent)
    return OnlineResponse(values, status)
