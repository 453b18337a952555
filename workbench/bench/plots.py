"""Plots of a sweep (matplotlib, Agg, PNG): recall vs QPS with a Pareto frontier per family, and build
time / index size vs recall. Recall is on a logit axis (0.9, 0.99, 0.999 equally spaced), as in
ann-benchmarks; a recall of exactly 1 is drawn at 1 - 1/(2 nq k), the resolution of the measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.bench.pareto import frontier
from workbench.plotting import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def sweep_title(df: pd.DataFrame, what: str) -> str:
    r = df.iloc[0]
    return (f"{what} — {r['dataset']} ({r['n_base']:,} x {r['dim']}, {r['metric']}, {r['n_queries']:,} queries)\n"
            f"recall@{r['k']}, QPS one query at a time on {r['threads']} thread(s)")


def plot_recall(df: pd.DataFrame) -> np.ndarray:
    """Recall clipped into the open interval the logit axis can draw."""
    top = 1 - 0.5 / float(df["n_queries"].iloc[0] * df["k"].iloc[0])
    return np.clip(df["recall"].to_numpy(float), 1e-3, top)


def _colors(families: list[str]) -> dict[str, tuple]:
    cmap = pyplot().get_cmap("tab10" if len(families) <= 10 else "tab20")
    return {f: cmap(i % cmap.N) for i, f in enumerate(families)}


RECALL_TICKS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9999)


COARSE_TICKS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)  # for the narrower two-panel figures


def _recall_axis(ax: "Axes", ticks: tuple[float, ...] = RECALL_TICKS) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("logit")
    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi] or [0.5]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("recall (logit scale; 1.0 drawn at 1 - 1/(2 nq k))")
    ax.grid(True, which="both", alpha=0.3)


def plot_recall_qps(df: pd.DataFrame, path: str | Path, y: str = "qps", title: str | None = None,
                    highlight: pd.Series | None = None) -> Path:
    """Every point faint, each family's Pareto frontier as a line; ``highlight`` circles one point."""
    fig, ax = draw_recall_qps(df, y=y, title=title, highlight=highlight)
    return save_png(fig, path)


def draw_recall_qps(df: pd.DataFrame, y: str = "qps", title: str | None = None,
                    highlight: pd.Series | None = None, ax: "Axes | None" = None) -> tuple["Figure", "Axes"]:
    """The recall/QPS figure on ``ax`` (a new figure when None)."""
    if ax is None:
        fig, ax = pyplot().subplots(figsize=(9, 5.5))
    else:
        fig = ax.figure
    df = df.assign(_x=plot_recall(df))
    families = sorted(df["family"].unique())
    colors = _colors(families)
    has_interval = {f"{y}_lo", f"{y}_hi"} <= set(df.columns)
    if has_interval:
        df = df.assign(_shift=_bar_shifts(df))
    for fam in families:
        g = df[df["family"] == fam]
        ax.scatter(g["_x"], g[y], color=colors[fam], alpha=0.3, s=18)
        f = frontier(g, x="recall", y=y)
        f = f.assign(_x=plot_recall(f)).sort_values("_x")
        ax.plot(f["_x"], f[y], "o-", color=colors[fam], label=fam, lw=1.8, ms=5)
        if has_interval:    # frontier points firmly, dominated ones faintly
            for part, alpha, cap in ((g.drop(f.index), 0.2, 0), (f, 0.9, 2)):
                _interval(ax, part, y, colors[fam], alpha, cap)
    if highlight is not None:
        hx = plot_recall(pd.DataFrame([highlight]))[0]
        ax.scatter([hx], [highlight[y]], s=220, facecolors="none", edgecolors="black", lw=2, zorder=5,
                   label=f"selected: {highlight['point']}")
    _recall_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("queries per second (log scale)" if y == "qps" else f"{y} (log scale)")
    if has_interval:
        ax.annotate("median of the passes; bars: its order-statistic interval", xy=(0.02, 0.08),
                    xycoords="axes fraction", ha="left", va="bottom", fontsize=8, color="0.35")
    ax.annotate("up and to the right is better", xy=(0.02, 0.03), xycoords="axes fraction", ha="left",
                va="bottom", fontsize=9, style="italic", color="0.35")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="family (Pareto frontier)",
              title_fontsize=8, frameon=False)
    ax.set_title(title or sweep_title(df, "Recall vs QPS"), fontsize=10)
    return fig, ax


BAR_STEP_PT = 2.5  # sideways distance between the interval bars of families at the same recall, in points


def _bar_shifts(df: pd.DataFrame) -> np.ndarray:
    """Per point, a sideways offset in points for its interval bar: families whose points share a recall
    (the exhaustive indexes all sit at 1.0) get their bars ``BAR_STEP_PT`` apart, centred on the point."""
    key = np.round(df["_x"].to_numpy(float), 3)
    shifts = np.zeros(len(df))
    for value in np.unique(key):
        at = np.flatnonzero(key == value)
        fams = sorted(set(df["family"].iloc[at]))
        for i in at:
            shifts[i] = (fams.index(df["family"].iloc[i]) - (len(fams) - 1) / 2) * BAR_STEP_PT
    return shifts


def _interval(ax: "Axes", g: pd.DataFrame, y: str, color: tuple, alpha: float, capsize: float) -> None:
    """Thin vertical bars from ``y_lo`` to ``y_hi`` at each point, moved sideways by ``_shift`` points."""
    from matplotlib.transforms import ScaledTranslation

    for shift_pt, part in g.groupby("_shift"):
        v = part[y].to_numpy(float)
        err = np.vstack([v - part[f"{y}_lo"].to_numpy(float), part[f"{y}_hi"].to_numpy(float) - v]).clip(min=0)
        shift = ax.transData + ScaledTranslation(shift_pt / 72, 0, ax.figure.dpi_scale_trans)
        ax.errorbar(part["_x"], v, yerr=err, fmt="none", ecolor=color, elinewidth=0.9, capsize=capsize,
                    alpha=alpha, transform=shift)


def plot_build_size(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Build time and bytes per vector against recall, one line per build configuration."""
    from matplotlib.ticker import FuncFormatter

    fig, axes = pyplot().subplots(1, 2, figsize=(13, 5))
    df = df.assign(_x=plot_recall(df))
    families = sorted(df["family"].unique())
    colors = _colors(families)
    seen: set[str] = set()
    for (fam, index), g in df.groupby(["family", "index"], sort=True):
        g = g.sort_values("_x")
        label = fam if fam not in seen else None
        seen.add(fam)
        for ax, col in zip(axes, ("build_s", "bytes_per_vector")):
            ax.plot(g["_x"], g[col], "o-", color=colors[fam], ms=4, lw=1, alpha=0.8, label=label)
    for ax, ylabel in zip(axes, ("build time, s (log scale)", "index bytes per vector (log scale)")):
        _recall_axis(ax, COARSE_TICKS)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel(ylabel)
        ax.annotate("down and to the right is better", xy=(0.98, 0.03), xycoords="axes fraction", ha="right",
                    fontsize=9, style="italic", color="0.35")
    raw = df.iloc[0]
    axes[1].axhline(4 * raw["dim"], color="0.5", ls="--", lw=1)
    axes[1].annotate(f"raw float32 ({4 * raw['dim']} B)", xy=(0.02, 4 * raw["dim"]), xycoords=("axes fraction", "data"),
                     va="top", fontsize=8, color="0.4")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="family", frameon=False)
    fig.suptitle(title or sweep_title(df, "Build time and index size vs recall"), fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def plot_parameter_effect(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """For each build configuration with a swept query parameter: recall and QPS against that parameter."""
    from matplotlib.ticker import FuncFormatter

    fig, axes = pyplot().subplots(1, 2, figsize=(13, 4.8))
    indexes = sorted(df["index"].unique())
    colors = _colors(indexes)
    for index in indexes:
        g = df[df["index"] == index]
        params = [json.loads(p) for p in g["query_params"]]
        name = next((n for n in params[0] if len({p[n] for p in params}) > 1), None)
        if name is None:
            continue
        g = g.assign(_p=[p[name] for p in params]).sort_values("_p")
        for ax, col in zip(axes, ("recall", "qps")):
            ax.plot(g["_p"], g[col], "o-", color=colors[index], ms=4, label=f"{index} ({name})")
    for ax, col in zip(axes, ("recall@k", "QPS, one query at a time (log scale)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("query parameter (efSearch / ef / nprobe), log2 scale")
        ax.set_ylabel(col)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title or sweep_title(df, "What the query parameter buys"), fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
