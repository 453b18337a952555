"""Window features: count, sum, mean, min and max of a feature over lookback windows ending at each entity time.

A window of length w at entity time T covers feature rows of the same key with event time in [T - w, T], both
ends inclusive (the same convention as ttl). Rows are first resolved to one per (key, event time) by the
join's rule (latest created, then last ingested): a second row at the same key and time is a restatement, not
a second event. ``count`` counts non-NULL values (0 when there are none); the other aggregates are NULL then.

Feature and entity rows of a key are interleaved by time and each aggregate is a window function framed
``RANGE BETWEEN w PRECEDING AND CURRENT ROW``; RANGE framing includes the current row's peers, so feature rows
at exactly T count. Entity rows carry NULL values and do not disturb the aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping, Sequence

import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.offline import ROW, OfflineStore
from workbench.features.pit import (
    ENTITY_ROW,
    ENTITY_TS,
    Request,
    check_key_types,
    entity_frame,
    plan,
)
from workbench.features.view import parse_ref, quote

AGGREGATES = {"count": "count", "sum": "sum", "mean": "avg", "min": "min", "max": "max"}


def window_label(w: timedelta) -> str:
    """1h, 24h -> "1d", 7d, 90s: the largest unit that divides the window."""
    s = int(w.total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s and s % n == 0:
            return f"{s // n}{unit}"
    return f"{w // timedelta(microseconds=1)}us"


@dataclass(frozen=True)
class WindowRequest:
    """One checked window request: the view, the feature, the windows by label and the output columns."""

    req: Request
    feature: str
    windows: dict[str, timedelta]
    aggregates: tuple[str, ...]
    outputs: tuple[str, ...]   # ``<feature>_<agg>_<label>``, windows outer, aggregates inner

    @property
    def output_aggregates(self) -> tuple[str, ...]:
        return tuple(a for _ in self.windows for a in self.aggregates)


def window_request(store: OfflineStore, entity_df: pd.DataFrame, ref: str,
                   windows: Sequence[timedelta] | Mapping[str, timedelta],
                   aggregates: Sequence[str]) -> WindowRequest:
    """Check a window request (windows positive, aggregates known, no column clash); shared by both engines."""
    _, feature = parse_ref(ref)
    wins = dict(windows) if isinstance(windows, Mapping) else {window_label(w): w for w in windows}
    if not wins:
        raise FeatureStoreError("window_features: no windows given")
    for label, w in wins.items():
        if w <= timedelta(0):
            raise FeatureStoreError(f"window {label!r}: length {w} must be positive")
    for a in aggregates:
        if a not in AGGREGATES:
            raise FeatureStoreError(f"unknown aggregate {a!r} (known: {list(AGGREGATES)})")
    req = plan(store, entity_df, [ref], False)[0]
    outputs = tuple(f"{feature}_{a}_{label}" for label in wins for a in aggregates)
    clash = [o for o in outputs if o in entity_df.columns]
    if clash:
        raise FeatureStoreError(f"window feature column(s) {clash} clash with entity_df columns")
    return WindowRequest(req, feature, wins, tuple(aggregates), outputs)


def window_features(store: OfflineStore, entity_df: pd.DataFrame, ref: str,
                    windows: Sequence[timedelta] | Mapping[str, timedelta],
                    aggregates: Sequence[str] = ("count", "sum", "mean", "min", "max")) -> pd.DataFrame:
    """``entity_df`` plus columns ``<feature>_<agg>_<label>`` (e.g. ``trips_sum_1h``), rows in input order."""
    wr = window_request(store, entity_df, ref, windows, aggregates)
    req, feature, wins, outputs = wr.req, wr.feature, wr.windows, wr.outputs
    v = req.view
    keys = [quote(k) for k in v.entities]
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    ts, val = quote(v.timestamp_field), quote(feature)
    resolve = ""
    if req.ties:
        created = f"{quote(v.created_timestamp_column)} DESC NULLS LAST, " if v.created_timestamp_column else ""
        resolve = f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}, {ts} ORDER BY {created}{ROW} DESC) = 1"
    ekeys = ", ".join(f"CAST({k} AS {v.dtypes[k_]}) AS {k}" for k, k_ in zip(keys, v.entities))
    frames = [f"{label} AS (PARTITION BY {', '.join(keys)} ORDER BY _wb_t "
              f"RANGE BETWEEN {w // timedelta(microseconds=1)} PRECEDING AND CURRENT ROW)"
              for label, w in ((f"_wb_w{i}", w) for i, w in enumerate(wins.values()))]
    aggs = ", ".join(f"{AGGREGATES[a]}(_wb_v) OVER _wb_w{i} AS {quote(f'{feature}_{a}_{label}')}"
                     for i, label in enumerate(wins) for a in aggregates)
    sel = ", ".join(f"coalesce(w.{quote(o)}, 0) AS {quote(o)}" if a == "count" else f"w.{quote(o)}"
                    for o, a in zip(outputs, wr.output_aggregates))
    frame = entity_frame(entity_df, list(v.entities))
    ent = f"_wb_win_{id(frame)}"
    store.con.register(ent, frame)
    try:
        check_key_types(store.con, ent, req)
        got = store.con.execute(f"""
            WITH f AS (SELECT {', '.join(keys)}, {ts}, {val} FROM {req.table} WHERE {not_null} {resolve}),
            u AS (
                SELECT {', '.join(keys)}, epoch_us({ts}) AS _wb_t, {val} AS _wb_v, NULL::BIGINT AS {ENTITY_ROW} FROM f
                UNION ALL
                SELECT {ekeys}, epoch_us({ENTITY_TS}), NULL, {ENTITY_ROW} FROM {ent}
                WHERE {not_null} AND {ENTITY_TS} IS NOT NULL
            ), w AS (
                SELECT {ENTITY_ROW}, {aggs} FROM u WINDOW {', '.join(frames)} QUALIFY {ENTITY_ROW} IS NOT NULL
            )
            SELECT {sel} FROM {ent} e LEFT JOIN w ON w.{ENTITY_ROW} = e.{ENTITY_ROW} ORDER BY e.{ENTITY_ROW}""").df()
    finally:
        store.con.unregister(ent)
    out = entity_df.copy()
    for o in outputs:
        out[o] = pd.Series(got[o].array, index=out.index)
    return out
