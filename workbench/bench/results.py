"""The results store: one tidy row per measured point, in a Parquet file written atomically.

A point is identified by ``KEY`` (data set, the point's spec text, build parameters, k, threads); a sweep
skips the points whose key is already in the file, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from workbench.errors import DatasetError
from workbench.io import atomic_write_bytes

KEY = ("dataset_digest", "point", "build_params", "k", "threads")


def point_key(row: dict[str, Any] | pd.Series) -> tuple:
    return tuple(row[c] for c in KEY)


def read_results(path: str | Path) -> pd.DataFrame:
    """The rows stored at ``path`` (an empty frame when there is no file yet)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{path}: not a readable results file ({exc})") from None


def measured_keys(df: pd.DataFrame) -> set[tuple]:
    if df.empty:
        return set()
    return {point_key(r) for _, r in df[list(KEY)].iterrows()}


def write_results(rows: Iterable[dict[str, Any]] | pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write all rows to ``path`` atomically (temp file + rename) and return them as a frame."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    return df
