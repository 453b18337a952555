"""Point-in-time joins in DuckDB: each entity row gets, per view, the row a reader at its timestamp could see.

The chosen row (rules of the issue, in order): same key values (NULL never matches); event time at most the
entity time; event time at least the entity time minus ttl (inclusive; else NULL); the latest event time, then
the latest created time (a missing created time counts as oldest), then -- the deterministic tie rule -- the
row ingested last. Its features are returned as they are, NULL included (no fallback to an older row).

Two SQL shapes, both O(n log n) whatever the number of updates per key:

* ASOF LEFT JOIN on the event time. DuckDB picks arbitrarily among rows with equal ASOF values, so when the
  store knows a (key, event time) pair occurs twice the inequality runs on the struct (event time, created,
  ingestion number) instead, which orders every row totally and makes ASOF's choice the rule's choice.
* ``filter_by_created_timestamp``: a row is a candidate when event and created times are both at most the
  entity time, i.e. when ``greatest(event, created) <= entity time``. One ASOF cannot express that (the
  candidate set is ordered by one time, the choice by another), so feature and entity rows of a key are
  interleaved by that time and a running ``max`` over ``ROWS UNBOUNDED PRECEDING`` of each row's rank in the
  rule's order gives each entity row the best candidate so far: a window function, not a range join. Views without a created
  column are joined as without the filter.

A NULL entity time matches nothing (like a NULL key). Output values keep DuckDB's types (nullable integers).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.offline import ROW, OfflineStore, _family
from workbench.features.timestamps import is_datetime_column, to_utc_naive
from workbench.features.view import FeatureView, parse_ref, quote

ENTITY_TS = "_wb_ts"
ENTITY_ROW = "_wb_erow"
MAX_BIGINT = 9223372036854775807


@dataclass(frozen=True)
class Request:
    """The features asked of one view and their output column names."""

    view: FeatureView
    table: str
    ties: bool
    features: tuple[str, ...]
    outputs: tuple[str, ...]


def entity_timestamp_column(entity_df: pd.DataFrame) -> str:
    """``event_timestamp`` if present, else the one datetime column (rule 1)."""
    if "event_timestamp" in entity_df.columns:
        return "event_timestamp"
    found = [c for c in entity_df.columns if is_datetime_column(entity_df[c])]
    if len(found) != 1:
        raise FeatureStoreError("entity_df needs an 'event_timestamp' column or exactly one datetime column; "
                                f"found {len(found)}: {found}")
    return found[0]


def plan(store: OfflineStore, entity_df: pd.DataFrame, refs: list[str], full_feature_names: bool) -> list[Request]:
    """Group ``view:feature`` refs by view, check keys and output names (rules 1 and 10)."""
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        v, f = parse_ref(ref)
        by_view.setdefault(v, []).append(f)
    out, seen = [], {}
    for name, feats in by_view.items():
        view = store.view(name)
        for f in feats:
            if f not in view.features:
                raise FeatureStoreError(f"feature view {name!r} has no feature {f!r} (has {list(view.features)})")
        for k in view.entities:
            if k not in entity_df.columns:
                raise FeatureStoreError(f"entity_df lacks join key {k!r} of feature view {name!r} "
                                        f"(has {list(entity_df.columns)})")
        outputs = tuple(f"{name}__{f}" if full_feature_names else f for f in feats)
        for ref, o in zip((f"{name}:{f}" for f in feats), outputs):
            if o in seen or o in entity_df.columns:
                other = seen.get(o, "an entity_df column")
                hint = "" if full_feature_names else "; pass full_feature_names=True"
                raise FeatureStoreError(f"output column {o!r} of {ref} clashes with {other}{hint}")
            seen[o] = ref
        out.append(Request(view, store.table(name), bool(store.state(name)["ties"]), tuple(feats), outputs))
    return out


def entity_frame(entity_df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The columns the SQL needs: join keys, the entity time as naive UTC, and the row's position."""
    ts = entity_timestamp_column(entity_df)
    frame = entity_df[keys].reset_index(drop=True)
    frame[ENTITY_TS] = to_utc_naive(entity_df[ts].reset_index(drop=True), f"entity_df.{ts}").to_numpy()
    frame[ENTITY_ROW] = range(len(frame))
    return frame


def check_key_types(con: duckdb.DuckDBPyConnection, entity: str, req: Request) -> None:
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {entity}").fetchall()}
    for k in req.view.entities:
        ef, vf = _family(types[k]), _family(req.view.dtypes[k])
        numeric = {"int", "float"}
        if ef != vf and not (ef in numeric and vf in numeric) and types[k] != '"NULL"':
            raise FeatureStoreError(f"join key {k!r}: entity_df has {types[k]}, feature view "
                                    f"{req.view.name!r} has {req.view.dtypes[k]}")


def _ttl_ok(req: Request, feature_ts: str) -> str:
    if req.view.ttl is None:
        return "true"
    return f"epoch_us(e.{ENTITY_TS}) - epoch_us({feature_ts}) <= {req.view.ttl_us}"


def asof_sql(req: Request, entity: str) -> str:
    v = req.view
    keys = " AND ".join(f"e.{quote(k)} = f.{quote(k)}" for k in v.entities)
    ts = quote(v.timestamp_field)
    feats = ", ".join(f"{quote(f)} AS _wb_f{i}" for i, f in enumerate(req.features))
    if req.ties:
        created = (f"c := coalesce({quote(v.created_timestamp_column)}, '-infinity'::TIMESTAMP), "
                   if v.created_timestamp_column else "")
        probe_c = "c := 'infinity'::TIMESTAMP, " if v.created_timestamp_column else ""
        order = f", struct_pack(t := {ts}, {created}r := {ROW}) AS _wb_ord"
        # A struct with a NULL field is not NULL (and compares high): keep a NULL entity time unmatched.
        cond = (f"CASE WHEN e.{ENTITY_TS} IS NOT NULL THEN struct_pack(t := e.{ENTITY_TS}, {probe_c}"
                f"r := {MAX_BIGINT}) END >= f._wb_ord")
    else:
        order, cond = "", f"e.{ENTITY_TS} >= f._wb_fts"
    ok = _ttl_ok(req, "f._wb_fts")
    cols = ", ".join(f"CASE WHEN {ok} THEN f._wb_f{i} END AS {quote(o)}" for i, o in enumerate(req.outputs))
    return (f"SELECT {cols} FROM {entity} e ASOF LEFT JOIN "
            f"(SELECT {', '.join(quote(k) for k in v.entities)}, {ts} AS _wb_fts{order}, {feats} FROM {req.table}) f "
            f"ON {keys} AND {cond} ORDER BY e.{ENTITY_ROW}")


def created_filter_sql(req: Request, entity: str) -> str:
    v = req.view
    ts, cr = quote(v.timestamp_field), quote(v.created_timestamp_column)
    keys = [quote(k) for k in v.entities]
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    feats = ", ".join(f"{quote(f)} AS _wb_f{i}" for i, f in enumerate(req.features))
    ekeys = ", ".join(f"CAST({k} AS {v.dtypes[k_]}) AS {k}" for k, k_ in zip(keys, v.entities))
    ok = _ttl_ok(req, "f._wb_fts")
    cols = ", ".join(f"CASE WHEN {ok} THEN f._wb_f{i} END AS {quote(o)}" for i, o in enumerate(req.outputs))
    # _wb_o numbers the rows in the rule's order (event, created, ingestion); a running max of that BIGINT is
    # several times faster than a running max of the struct itself.
    return f"""
        WITH f AS (
            SELECT {', '.join(keys)}, {ts} AS _wb_fts, {cr} AS _wb_c, {feats},
                   row_number() OVER (ORDER BY {ts}, {cr}, {ROW}) AS _wb_o
            FROM {req.table} WHERE {cr} IS NOT NULL AND {not_null}
        ), u AS (
            SELECT {', '.join(keys)}, epoch_us(greatest(_wb_fts, _wb_c)) AS _wb_t, 0 AS _wb_kind,
                   NULL::BIGINT AS {ENTITY_ROW}, _wb_o FROM f
            UNION ALL
            SELECT {ekeys}, epoch_us({ENTITY_TS}), 1, {ENTITY_ROW}, NULL
            FROM {entity} WHERE {not_null} AND {ENTITY_TS} IS NOT NULL
        ), w AS (
            SELECT {ENTITY_ROW}, max(_wb_o) OVER (PARTITION BY {', '.join(keys)} ORDER BY _wb_t, _wb_kind
                                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS _wb_o
            FROM u QUALIFY _wb_kind = 1
        )
        SELECT {cols} FROM {entity} e LEFT JOIN w ON w.{ENTITY_ROW} = e.{ENTITY_ROW} LEFT JOIN f ON f._wb_o = w._wb_o
        ORDER BY e.{ENTITY_ROW}"""


def historical_features(store: OfflineStore, entity_df: pd.DataFrame, refs: list[str], *,
                        full_feature_names: bool = False, filter_by_created_timestamp: bool = False) -> pd.DataFrame:
    """``entity_df`` (same rows, same order, same index) with one column per requested feature."""
    reqs = plan(store, entity_df, list(refs), full_feature_names)
    keys = list(dict.fromkeys(k for r in reqs for k in r.view.entities))
    frame = entity_frame(entity_df, keys)
    con = store.con
    entity = f"_wb_entity_{id(frame)}"
    con.register(entity, frame)
    out = entity_df.copy()
    try:
        for req in reqs:
            check_key_types(con, entity, req)
            by_created = filter_by_created_timestamp and req.view.created_timestamp_column
            sql = created_filter_sql(req, entity) if by_created else asof_sql(req, entity)
            got = con.execute(sql).df()
            for o in req.outputs:
                out[o] = pd.Series(got[o].array, index=out.index)
    finally:
        con.unregister(entity)
    return out
