"""Numbers formatted for people: QPS without decimals, recall to 3 places, times and sizes with units."""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"  # not measured / target not reached


def _bad(v: Any) -> bool:
    return v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v)


def qps(v: Any) -> str:
    return MISSING if _bad(v) else f"{v:,.0f}"


TIED = "≈"  # the best-QPS table's mark: the QPS interval overlaps another family's at that recall target


def ranked_qps(cell: dict[str, Any]) -> str:
    """A best-QPS cell: ``'21,034 #1'``, ``'20,118 #2 ≈'`` when its interval overlaps another family's."""
    rank = f" #{cell['rank']}" if "rank" in cell else ""
    return f"{qps(cell.get('qps'))}{rank}{' ' + TIED if cell.get('tied_with') else ''}"


def recall(v: Any) -> str:
    return MISSING if _bad(v) else f"{v:.3f}"


def ratio(v: Any, places: int = 3) -> str:
    return MISSING if _bad(v) else f"{v:.{places}f}"


def integer(v: Any) -> str:
    return MISSING if _bad(v) else f"{v:,.0f}"


def percent(v: Any) -> str:
    return MISSING if _bad(v) else f"{100 * v:.1f} %"


def format_seconds(v: Any) -> str:
    """0.00087 -> '0.87 ms', 1.268 -> '1.27 s', 75.2 -> '1 min 15 s'."""
    if _bad(v):
        return MISSING
    if v < 1e-3:
        return f"{v * 1e6:.0f} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    if v < 60:
        return f"{v:.3g} s"
    minutes, seconds = divmod(round(v), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def milliseconds(v: Any) -> str:
    return MISSING if _bad(v) else format_seconds(v / 1e3)


def size(v: Any) -> str:
    """Bytes: '128 B', '1.5 KiB', '3.2 MiB'."""
    if _bad(v):
        return MISSING
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return MISSING


def text(v: Any) -> str:
    if v is None:
        return MISSING
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)
