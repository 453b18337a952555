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

#: What a rerun adds to a point's noise beyond what its passes in one run show: each process lays the index
#: and the queries out in memory differently (Mytkowicz et al., "Producing wrong data without doing anything
#: obviously wrong!", ASPLOS 2009; pyperf spawns worker processes for this reason). Half the median spread of
#: the medians over three reruns of the default sweep on the sentence set, each in its own process
#: (``workbench ann-spread sentences --reruns 3``: 11.6%, 2 cores, 2026-12-02); that command prints the
#: figure measured on your machine beside it.
RERUN_NOISE = 0.06


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

    Columns: ``by``, ``target``, ``point`` (missing when no point reaches the target), ``recall``, ``y``, and
    ``y_lo``/``y_hi`` (the point's interval) when ``df`` has them."""
    extra = [c for c in (f"{y}_lo", f"{y}_hi") if c in df.columns]
    rows = []
    for name, g in df.groupby(by, sort=True):
        for t in targets:
            ok = g[g[recall] >= t]
            if ok.empty:
                rows.append({by: name, "target": t, "point": None, recall: np.nan, y: np.nan,
                             **{c: np.nan for c in extra}})
            else:
                best = ok.loc[ok[y].idxmax()]
                rows.append({by: name, "target": t, "point": best["point"], recall: best[recall], y: best[y],
                             **{c: best[c] for c in extra}})
    return pd.DataFrame(rows)


def overlaps(a: dict, b: dict, margin: float = RERUN_NOISE) -> bool:
    """Whether two cells' QPS intervals ``[qps_lo, qps_hi]``, each widened by ``margin`` of its bounds (the
    rerun noise one run cannot see, :data:`RERUN_NOISE`), overlap: the two are then not distinguishable at
    this noise level. A cell without an interval (an old results file) has the empty one at its QPS."""
    lo_a, hi_a = a.get("qps_lo", a["qps"]) * (1 - margin), a.get("qps_hi", a["qps"]) * (1 + margin)
    lo_b, hi_b = b.get("qps_lo", b["qps"]) * (1 - margin), b.get("qps_hi", b["qps"]) * (1 + margin)
    return lo_a <= hi_b and lo_b <= hi_a


def rank_cells(cells: dict[str, dict | None]) -> None:
    """Add ``rank`` (1 = highest median QPS) and ``tied_with`` (the families whose interval overlaps this
    one's, in rank order) to every reached cell of one recall target, in place."""
    ranked = sorted((f for f, c in cells.items() if c is not None), key=lambda f: -cells[f]["qps"])
    for i, fam in enumerate(ranked):
        cells[fam]["rank"] = i + 1
        cells[fam]["tied_with"] = [o for o in ranked if o != fam and overlaps(cells[fam], cells[o])]


def summary_table(df: pd.DataFrame, targets: Sequence[float] = RECALL_TARGETS) -> dict:
    """The best-QPS-at-recall table as JSON-ready ``{family: {"0.90": cell | None}}``; a cell holds
    ``point, recall, qps`` (+ ``qps_lo, qps_hi`` when measured), ``rank`` among the families at that target
    and ``tied_with``: the families whose QPS interval, widened by the rerun noise, overlaps (:func:`overlaps`)."""
    table: dict[str, dict] = {}
    for r in best_at_recall(df, targets).to_dict("records"):
        cell = None if pd.isna(r["point"]) else {
            "point": r["point"], "recall": float(r["recall"]), "qps": float(r["qps"]),
            **{c: float(r[c]) for c in ("qps_lo", "qps_hi") if c in r}}
        table.setdefault(r["family"], {})[f"{r['target']:.2f}"] = cell
    for t in targets:
        rank_cells({fam: cells[f"{t:.2f}"] for fam, cells in table.items()})
    return table


def ranked_frame(table: dict) -> pd.DataFrame:
    """A :func:`summary_table` as one row per (target, family reaching it), ranked: ``target, rank, family,
    point, recall, qps, qps_lo, qps_hi, tied_with`` (``"≈ B, C"`` where intervals overlap)."""
    rows = [{"target": t, "rank": c["rank"], "family": fam, "point": c["point"], "recall": c["recall"],
             "qps": c["qps"], "qps_lo": c.get("qps_lo"), "qps_hi": c.get("qps_hi"),
             "tied_with": ("≈ " + ", ".join(c["tied_with"])) if c["tied_with"] else ""}
            for fam, cells in table.items() for t, c in cells.items() if c is not None]
    return pd.DataFrame(rows).sort_values(["target", "rank"]).reset_index(drop=True) if rows else pd.DataFrame()
