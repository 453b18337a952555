"""The one validation layer of command-line arguments: argparse ``type=`` functions.

Every command declares its numbers, sizes and folders with these, so a bad value stops the command at
parse time (exit 2, the usage line and a message naming the flag and the value) before any work starts:
``--threads 0`` is refused rather than measured, ``--out`` under a regular file is refused before an
hour-long evaluation rather than after it.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Callable

from workbench.errors import OutputError, TrackingError
from workbench.io import writable_dir

# DuckDB's memory_limit units (https://duckdb.org/docs/configuration/overview): 1000- and 1024-based.
MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")


def _int(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (threads, runs, k, limits, sizes)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (time budgets)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction_list(text: str) -> list[float]:
    """Comma-separated numbers in (0, 1] (selectivities)."""
    values = [_float(v) for v in text.split(",") if v.strip()]
    bad = [v for v in values if not 0 < v <= 1]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions in (0, 1], got {text!r}")
    return values


def positive_int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1 (over-fetch factors, updates per key)."""
    values = [_int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def memory_size(text: str) -> str:
    """A memory size such as ``1GB``, ``512MiB`` (DuckDB's units), returned normalised (``1GB``)."""
    match = _MEMORY.match(text)
    unit = match[2].upper() if match else ""
    if not match or unit not in MEMORY_UNITS:
        raise argparse.ArgumentTypeError(
            f"expected a memory size such as 1GB or 512MiB (units {', '.join(_unit_names())}), got {text!r}")
    if float(match[1]) * MEMORY_UNITS[unit] < 2**20:
        raise argparse.ArgumentTypeError(f"memory size {text!r} is below 1 MiB")
    return f"{match[1]}{unit.replace('I', 'i')}"


def _unit_names() -> list[str]:
    return [u.replace("I", "i") for u in MEMORY_UNITS]


def where_clause(text: str) -> str:
    """A ``--where`` condition, checked against the strict grammar of
    :func:`workbench.tracking.query.parse_where` before the store is opened."""
    from workbench.tracking.query import parse_where  # pandas: only when --where is given

    try:
        parse_where(text)
    except TrackingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def out_dir(text: str) -> Path:
    """An output folder, created and proven writable now (under a regular file, in /proc or /sys, or
    read-only: refused in one line)."""
    try:
        return writable_dir(text)
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def existing_dir(text: str) -> Path:
    """A folder that must exist already (an input folder, e.g. the report's)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is {'not a folder' if path.exists() else 'missing'}")
    return path


def checked_out(path: Path | None, default: Callable[[], Path]) -> Path:
    """``--out`` when given (already checked by :func:`out_dir`), else ``default()`` checked the same way,
    so that a command's default output folder is proven writable before its work starts too."""
    return path if path is not None else writable_dir(default())
