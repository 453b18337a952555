"""How far a sweep's QPS moves between reruns (issue 13): per point the spread of the medians over N
reruns, and per recall target whether every pair of families the best-QPS table marks as different (their
intervals do not overlap, ``workbench.bench.pareto.overlaps``) is ranked the same way in every rerun.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.bench.pareto import RECALL_TARGETS, summary_table
from workbench.plotting import pyplot, save_png


def point_spread(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per point measured in every rerun: ``family, point, recall`` (median over reruns),
    ``qps_min, qps_max, qps_median`` of the reruns' medians, ``rel_spread = (max - min) / median`` and
    ``rel_interval``, the mean width of a rerun's own interval relative to its median (what one run
    predicts of the spread)."""
    both = pd.concat([f.assign(_rerun=i) for i, f in enumerate(frames)], ignore_index=True)
    rows = []
    for (family, point), g in both.groupby(["family", "point"], sort=True):
        if g["_rerun"].nunique() < len(frames):
            continue
        q = g["qps"].to_numpy(float)
        width = ((g["qps_hi"] - g["qps_lo"]) / g["qps"]).to_numpy(float) if "qps_lo" in g else np.full(len(g), np.nan)
        med = float(np.median(q))
        rows.append({"family": family, "point": point, "recall": float(g["recall"].median()),
                     "qps_min": float(q.min()), "qps_max": float(q.max()), "qps_median": med,
                     "rel_spread": float((q.max() - q.min()) / med), "rel_interval": float(np.nanmean(width)),
                     "medians": [float(v) for v in g.sort_values("_rerun")["qps"]]})
    return pd.DataFrame(rows)


def ranking_consistency(tables: Sequence[dict], targets: Sequence[float] = RECALL_TARGETS) -> dict[str, Any]:
    """For each target (``"0.95"``): every pair of families that some rerun's table marks as different, and
    whether all reruns order that pair the same way (a family that misses the target in a rerun makes the
    pair inconsistent). ``{"0.95": {"pairs": n, "consistent": bool, "inconsistent": [...], "checked": [...]}}``."""
    out: dict[str, Any] = {}
    for t in (f"{x:.2f}" for x in targets):
        cells = [{fam: by_t.get(t) for fam, by_t in table.items()} for table in tables]
        families = sorted({fam for c in cells for fam in c})
        checked = []
        for a, b in combinations(families, 2):
            marked = [i for i, c in enumerate(cells) if c.get(a) and c.get(b) and b not in c[a]["tied_with"]]
            if not marked:
                continue
            order = [None if not (c.get(a) and c.get(b)) else (a if c[a]["qps"] > c[b]["qps"] else b)
                     for c in cells]
            checked.append({"pair": [a, b], "marked_different_in": marked, "faster_per_rerun": order,
                            "same_in_all": None not in order and len(set(order)) == 1})
        bad = [c for c in checked if not c["same_in_all"]]
        out[t] = {"pairs": len(checked), "consistent": not bad, "inconsistent": bad, "checked": checked}
    return out


def spread_tables(frames: Sequence[pd.DataFrame], targets: Sequence[float] = RECALL_TARGETS) -> list[dict]:
    """Each rerun's best-QPS-at-recall table (``summary_table``)."""
    return [summary_table(f, targets) for f in frames]


def plot_spread(spread: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Left: each point's spread of medians against its median QPS; right: the spread against the mean
    width of one run's interval (points above the diagonal moved more between reruns than one run said)."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(13, 5))
    families = sorted(spread["family"].unique())
    cmap = pyplot().get_cmap("tab10" if len(families) <= 10 else "tab20")
    for i, fam in enumerate(families):
        g = spread[spread["family"] == fam]
        left.scatter(g["qps_median"], 100 * g["rel_spread"], color=cmap(i % cmap.N), s=22, label=fam)
        right.scatter(100 * g["rel_interval"], 100 * g["rel_spread"], color=cmap(i % cmap.N), s=22)
    from matplotlib.ticker import FuncFormatter

    left.set_xscale("log")
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    # minor labels at 2 and 5 of each decade only: all nine crowd into one another
    left.xaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:,.0f}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else ""))
    left.set_xlabel("median QPS over the reruns (log scale)")
    right.set_xlabel("one run's interval width, % of its median (mean over reruns)")
    top = max(1.0, 100 * float(np.nanmax(spread[["rel_spread", "rel_interval"]].to_numpy())) * 1.05)
    right.plot([0, top], [0, top], color="0.5", ls="--", lw=1)
    right.annotate("above the line: reruns moved more than one run's interval", xy=(0.02, 0.95),
                   xycoords="axes fraction", va="top", fontsize=8, color="0.35")
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.set_ylabel("spread of the medians, (max - min) / median, %")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    right.legend(*left.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                 title="family", frameon=False)
    return save_png(fig, path)
