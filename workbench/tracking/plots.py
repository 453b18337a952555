"""A picture of runs read back from the store: the constraint, and the run it picked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.plotting import pyplot, save_png


def plot_constrained_choice(runs: pd.DataFrame, x: str, y: str, floor: float, chosen_run_id: str,
                            path: str | Path, title: str) -> Path:
    """Scatter of ``metrics.<x>`` against ``metrics.<y>`` (log y) for ``runs`` (a ``runs_frame``), the
    feasible region ``x >= floor`` shaded, and the chosen run circled."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    xs, ys = runs[f"metrics.{x}"], runs[f"metrics.{y}"]
    ax.scatter(xs, ys, color="tab:blue", zorder=3, label="runs")
    for _, r in runs.iterrows():
        ax.annotate(r["run_name"], (r[f"metrics.{x}"], r[f"metrics.{y}"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    best = runs[runs["run_id"] == chosen_run_id]
    ax.scatter(best[f"metrics.{x}"], best[f"metrics.{y}"], s=220, facecolors="none", edgecolors="tab:red",
               linewidths=2, zorder=4, label=f"chosen: highest {y} with {x} ≥ {floor}")
    ax.axvspan(floor, max(1.0, float(xs.max())) + 0.005, color="tab:green", alpha=0.08, label=f"{x} ≥ {floor}")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
