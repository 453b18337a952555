"""The results store: one tidy row per measured point, in a Parquet file written atomically with a SHA-256
sidecar (``results.parquet.sha256``) that is verified on every read.

A point is identified by ``KEY`` (data set, the point's spec text, build parameters, k, threads); a sweep
skips the points whose key is already in the file, so an interrupted sweep resumes where it stopped, and a
damaged file (its bytes no longer match the sidecar) stops the sweep instead of being built on.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from workbench.errors import DatasetError, ResultsIntegrityError
from workbench.io import atomic_write_json, read_checked, write_checked

KEY = ("dataset_digest", "point", "build_params", "k", "threads")


def point_key(row: dict[str, Any] | pd.Series) -> tuple:
    return tuple(row[c] for c in KEY)


def read_results(path: str | Path) -> pd.DataFrame:
    """The rows stored at ``path`` (an empty frame when there is no file yet); raises
    :class:`~workbench.errors.ResultsIntegrityError` if the file does not match its checksum."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    data = read_checked(path)
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{path}: not a readable results file ({exc})") from None


def measured_keys(df: pd.DataFrame) -> set[tuple]:
    if df.empty:
        return set()
    return {point_key(r) for _, r in df[list(KEY)].iterrows()}


def write_results(rows: Iterable[dict[str, Any]] | pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write all rows to ``path`` and its checksum sidecar atomically (temp file + rename) and return them
    as a frame."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_checked(path, buf.getvalue())
    return df


def sweep_time(path: Path, spent: float, measured: bool, **extra: Any) -> dict[str, Any]:
    """The wall time, builds included, of the resumable sweep recorded in ``path``: ``spent`` is added when
    this run measured points (``measured``) or nothing is recorded yet, so a sweep read back whole reports
    the time it took to measure, not the seconds of reading it. ``{"wall_s": s, **extra}`` (``extra``
    as of the last run that measured)."""
    try:
        record = json.loads(path.read_text()) if path.is_file() else None
        before = float(record["wall_s"]) if record is not None else 0.0
    except (ValueError, KeyError, TypeError):
        raise ResultsIntegrityError(f'{path}: not a grid time record ({{"wall_s": N}}); delete it to count '
                                    "this sweep's time afresh") from None
    if measured or record is None:
        record = {"wall_s": before + spent, **extra}
        atomic_write_json(path, record)
    return record
