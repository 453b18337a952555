"""Brute-force point-in-time join and window aggregates in plain pandas/Python: the tests' reference.

Written from the rules of issue 6 without sharing code with ``workbench.features``: each entity row scans
every feature row. Quadratic, so only for small tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Sequence

import pandas as pd


def utc(v) -> pd.Timestamp | None:
    """Naive -> UTC; aware -> converted to UTC; missing -> None. Returned naive (UTC wall time)."""
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    t = pd.Timestamp(v)
    if t is pd.NaT:
        return None
    return t if t.tzinfo is None else t.tz_convert("UTC").tz_localize(None)


def missing(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def stacked(batches: Sequence[pd.DataFrame]) -> list[dict]:
    """All ingested rows in ingestion order, each with its ingestion number ``_rid``."""
    rows = []
    for b in batches:
        for r in b.to_dict("records"):
            r["_rid"] = len(rows)
            rows.append(r)
    return rows


def _order(r: dict, ts: str, created: str | None) -> tuple:
    c = utc(r[created]) if created else None
    return (utc(r[ts]), c is not None, c or pd.Timestamp.min, r["_rid"])


def pit_join(batches: Sequence[pd.DataFrame], entity_df: pd.DataFrame, *, entities: Sequence[str],
             features: Sequence[str], ts: str = "event_timestamp", created: str | None = None,
             ttl: timedelta | None = None, entity_ts: str = "event_timestamp",
             filter_by_created: bool = False) -> pd.DataFrame:
    """One row per entity row (same order) with the chosen row's features, or None."""
    rows = stacked(batches)
    out = []
    for e in entity_df.to_dict("records"):
        et = utc(e[entity_ts])
        best = None
        if et is not None and not any(missing(e[k]) for k in entities):
            for r in rows:
                if any(missing(r[k]) or r[k] != e[k] for k in entities):
                    continue
                ft = utc(r[ts])
                if ft > et or (ttl is not None and ft < et - ttl):
                    continue
                if filter_by_created and created:
                    c = utc(r[created])
                    if c is None or c > et:
                        continue
                if best is None or _order(r, ts, created) > _order(best, ts, created):
                    best = r
        out.append({f: (None if best is None or missing(best[f]) else best[f]) for f in features})
    return pd.DataFrame(out, columns=list(features))


def window_aggregates(batches: Sequence[pd.DataFrame], entity_df: pd.DataFrame, *, entities: Sequence[str],
                      feature: str, window: timedelta, ts: str = "event_timestamp", created: str | None = None,
                      entity_ts: str = "event_timestamp") -> pd.DataFrame:
    """count/sum/mean/min/max over [T - window, T] after keeping one row per (key, event time)."""
    latest: dict[tuple, dict] = {}
    for r in stacked(batches):
        if any(missing(r[k]) for k in entities):
            continue
        pair = (tuple(r[k] for k in entities), utc(r[ts]))
        if pair not in latest or _order(r, ts, created) > _order(latest[pair], ts, created):
            latest[pair] = r
    out = []
    for e in entity_df.to_dict("records"):
        et = utc(e[entity_ts])
        vals = []
        if et is not None and not any(missing(e[k]) for k in entities):
            key = tuple(e[k] for k in entities)
            vals = [r[feature] for (k, t), r in latest.items()
                    if k == key and et - window <= t <= et and not missing(r[feature])]
        out.append({"count": len(vals), "sum": sum(vals) if vals else None,
                    "mean": sum(vals) / len(vals) if vals else None,
                    "min": min(vals) if vals else None, "max": max(vals) if vals else None})
    return pd.DataFrame(out, columns=["count", "sum", "mean", "min", "max"])
