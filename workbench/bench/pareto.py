"""Pareto frontiers and the best-QPS-at-recall table.

A point is on the frontier of its family when no other point of the family is at least as good on
both axes and better on one; "good" follows each metric's direction in ``workbench.index.metrics``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from workbench.index.metrics import METRICS

RECALL_TARGETS = (0.90, 0.95, 0.99)


def pareto_mask(x: Sequence[float], y: Sequence[float], x_higher: bool = True, y_higher: bool = True) -> np.ndarray:
    """True for the points no other point dominates (ties on both axes keep every copy)."""
    x = np.asarray(x, dtype=float) * (1 if x_higher else -1)
    y = np.asarray(y, dtype=float) * (1 if y_higher else -1)
    ge = (x[None, :] >= x[:, None]) & (y[None, :] >= y[:, None])
    gt = (x[None, :] > x[:, None]) | (y[None, :] > y[:, None])
    return ~(ge & gt).any(axis=1)


def frontier(df: pd.DataFrame, x: str = "recall", y: str = "qps", by: str = "family") -> pd.DataFrame:
    """The frontier points of each group ``by``, sorted by group then ``x``."""
    if df.empty:
        return df
    parts = []
    for _, g in df.groupby(by, sort=True):
        m = pareto_mask(g[x], g[y], METRICS[x].direction == "higher", METRICS[y].direction == "higher")
        parts.append(g[m].sort_values(x))
    return pd.concat(parts)


def best_at_recall(df: pd.DataFrame, targets: Sequence[float] = RECALL_TARGETS, y: str = "qps",
                   by: str = "family", recall: str = "recall") -> pd.DataFrame:
    """For each group and target: the point with the highest ``y`` among those with recall >= target.

    Columns: ``by``, ``target``, ``point`` (missing when no point reaches the target), ``recall``, ``y``."""
    rows = []
    for name, g in df.groupby(by, sort=True):
        for t in targets:
            ok = g[g[recall] >= t]
            if ok.empty:
                rows.append({by: name, "target": t, "point": None, recall: np.nan, y: np.nan})
            else:
                best = ok.loc[ok[y].idxmax()]
                rows.append({by: name, "target": t, "point": best["point"], recall: best[recall], y: best[y]})
    return pd.DataFrame(rows)


def summary_table(df: pd.DataFrame, targets: Sequence[float] = RECALL_TARGETS) -> dict:
    """The best-QPS-at-recall table as JSON-ready ``{family: {"0.90": {point, recall, qps}|None}}``."""
    table: dict[str, dict] = {}
    for r in best_at_recall(df, targets).to_dict("records"):
        cell = None if pd.isna(r["point"]) else {"point": r["point"], "recall": r["recall"], "qps": r["qps"]}
        table.setdefault(r["family"], {})[f"{r['target']:.2f}"] = cell
    return table
