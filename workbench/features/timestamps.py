"""Timestamps in one convention: naive UTC at microsecond resolution (DuckDB's TIMESTAMP).

Naive input is taken as UTC; aware input, whatever its zone (mixed zones in one column included), is
converted to UTC. Sub-microsecond parts are refused rather than truncated, because truncation could turn
``feature_ts > entity_ts`` into equality and let a future value through.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from workbench.errors import TimestampError


def is_datetime_column(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.DatetimeTZDtype) or s.dtype.kind == "M"


def to_utc_naive(s: pd.Series, what: str) -> pd.Series:
    """``s`` as ``datetime64[us]`` holding UTC wall time; ``what`` names the column in errors."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif s.dtype.kind == "M":
        out = s
    elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        out = _parse_objects(s, what)
    else:
        raise TimestampError(f"{what} must hold timestamps, got dtype {s.dtype}")
    ns = out.dt.as_unit("ns")
    values = ns.to_numpy(dtype="datetime64[ns]").view(np.int64)
    bad = np.flatnonzero((values % 1000 != 0) & ~ns.isna().to_numpy())
    if bad.size:
        raise TimestampError(f"{what} row {int(bad[0])}: {ns.iloc[bad[0]]} has a sub-microsecond part "
                             "(timestamps are stored to the microsecond)")
    return out.dt.as_unit("us")


def _parse_objects(s: pd.Series, what: str) -> pd.Series:
    def one(v):
        if v is None or (not isinstance(v, (str, datetime)) and pd.isna(v)):
            return pd.NaT
        try:
            t = pd.Timestamp(v)
        except (TypeError, ValueError) as exc:
            raise TimestampError(f"{what}: {v!r} is not a timestamp") from exc
        return t.tz_localize(None) if t.tzinfo is None else t.tz_convert("UTC").tz_localize(None)

    return pd.Series(pd.to_datetime([one(v) for v in s]), index=s.index, name=s.name)


def to_utc_timestamp(t: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """One timestamp in the same convention (naive = UTC)."""
    ts = pd.Timestamp(t)
    return ts.tz_localize(None) if ts.tzinfo is None else ts.tz_convert("UTC").tz_localize(None)
