"""Plots of a filtered-search sweep (``workbench.bench.filtered``): recall and latency against selectivity,
one panel per index."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from workbench.plotting import pyplot, save_png

# post-filter curves darken as over-fetch grows; pre-filter and exact stand apart
_PREFILTER_COLOR = "tab:blue"
_EXACT_COLOR = "0.25"
_POSTFILTER_CMAP = "Oranges"


def _style(strategy: str, overfetch: int | None, all_overfetch: list[int]) -> dict:
    if strategy == "exact_subset":
        return dict(color=_EXACT_COLOR, linestyle="--", marker="s", markersize=4, label="exact subset")
    if strategy == "prefilter":
        return dict(color=_PREFILTER_COLOR, linestyle="-", marker="o", markersize=5, label="pre-filter")
    cmap = matplotlib.colormaps[_POSTFILTER_CMAP]
    rank = all_overfetch.index(overfetch)
    shade = 0.45 + 0.5 * rank / max(len(all_overfetch) - 1, 1)
    return dict(color=cmap(shade), linestyle="-", marker="^", markersize=5,
                label=f"post-filter, over-fetch x{overfetch}")


def _curves(frame: pd.DataFrame, index: str):
    """The curves of one panel: the index's strategies, then the exact subset as reference."""
    overfetch = sorted(int(f) for f in frame["overfetch"].dropna().unique())
    exact = frame[frame["strategy"] == "exact_subset"]
    if len(exact):  # first, so that an index that matches it is drawn on top
        yield exact.sort_values("selectivity"), _style("exact_subset", None, overfetch)
    own = frame[(frame["index"] == index) & (frame["strategy"] != "exact_subset")]
    for (strategy, f), group in own.groupby(["strategy", own["overfetch"].fillna(0).astype(int)], sort=False):
        yield group.sort_values("selectivity"), _style(strategy, f or None, overfetch)


def _panels(frame: pd.DataFrame) -> list[str]:
    return [i for i in dict.fromkeys(frame["index"]) if i != "exact"] or ["exact"]


def _title(frame: pd.DataFrame, what: str) -> str:
    first = frame.iloc[0]
    threads = int(first["threads"])
    return (f"{what}: {first['dataset']} ({int(first['n_base']):,} vectors, {int(first['n_queries'])} queries), "
            f"k={int(first['k'])}, one query at a time, {threads} thread{'s' if threads > 1 else ''}")


def _selectivity_axis(ax, frame: pd.DataFrame) -> None:
    ticks = sorted(frame["selectivity"].unique())
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * t:g}%" for t in ticks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("selectivity (fraction of ids the predicate allows)")
    ax.grid(True, alpha=0.3)


def _grid(n: int) -> tuple[int, int]:
    cols = 1 if n == 1 else 2
    return -(-n // cols), cols


def _legend(fig, handles, labels) -> None:
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)


def plot_recall(frame: pd.DataFrame, path: str | Path, min_recall: float = 0.9) -> Path:
    """Recall@k (large panel) and the fraction of queries with fewer than k results (small panel) per index.

    Each post-filter curve is ringed where it collapses (its largest selectivity with recall below
    ``min_recall``, also listed under the panel title), and the selectivity ``1 / overfetch`` below which
    it is expected to collapse is marked.
    """
    plt = pyplot()
    panels = _panels(frame)
    rows, cols = _grid(len(panels))
    k = int(frame["k"].iloc[0])
    s_max = float(frame["selectivity"].max())
    fig = plt.figure(figsize=(5.4 * cols, 5.0 * rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(rows, cols, wspace=0.04, hspace=0.04)).ravel()
    handles, labels = [], []
    for sub, index in zip(subfigs, panels):
        top, bottom = sub.subplots(2, 1, sharex=True, height_ratios=[2.4, 1])
        collapse = []
        for group, style in _curves(frame, index):
            line, = top.plot(group["selectivity"], group["recall"], **style)
            bottom.plot(group["selectivity"], group["frac_short"], **{**style, "label": None})
            if style["label"] not in labels:
                handles.append(line)
                labels.append(style["label"])
            if group["strategy"].iloc[0] != "postfilter":
                continue
            f = int(group["overfetch"].iloc[0])
            if 1 / f <= s_max:
                top.axvline(1 / f, color=style["color"], linestyle=":", linewidth=1.2)
            low = group[group["recall"] < min_recall]
            if len(low):
                worst = low.loc[low["selectivity"].idxmax()]
                top.plot(worst["selectivity"], worst["recall"], marker="o", markersize=12, markerfacecolor="none",
                         markeredgecolor=style["color"], markeredgewidth=1.6, linestyle="none")
                collapse.append(f"x{f} {100 * worst['selectivity']:g}%")
        title = index
        if collapse:
            title += f"\npost-filter recall < {min_recall} up to s = " + ", ".join(collapse)
        top.set_title(title, fontsize=10)
        top.set_ylim(-0.03, 1.05)
        top.axhline(min_recall, color="0.55", linewidth=0.9, linestyle="-.")
        top.set_ylabel(f"recall@{k}")
        bottom.set_ylim(-0.05, 1.08)
        bottom.set_ylabel(f"share of queries\nwith < {k} results", fontsize=8.5)
        for ax in (top, bottom):
            _selectivity_axis(ax, frame)
        top.set_xlabel("")
        top.tick_params(labelbottom=False)
    for sub in subfigs[len(panels):]:
        sub.set_visible(False)
    handles += [Line2D([], [], color="0.4", linestyle=":", linewidth=1.2),
                Line2D([], [], color="0.4", marker="o", markersize=12, markerfacecolor="none", markeredgewidth=1.6,
                       linestyle="none"),
                Line2D([], [], color="0.55", linestyle="-.", linewidth=0.9)]
    labels += ["selectivity = 1/over-fetch:\npost-filter expected to collapse\nto the left",
               f"largest selectivity with\nrecall < {min_recall} (collapse)", f"recall {min_recall}"]
    _legend(fig, handles, labels)
    fig.suptitle(_title(frame, f"Filtered search, recall@{k} against the exact filtered top-{k}"), fontsize=11)
    return save_png(fig, path)


def plot_latency(frame: pd.DataFrame, path: str | Path) -> Path:
    """Median single-query latency against selectivity, log-log, one panel per index."""
    plt = pyplot()
    panels = _panels(frame)
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.9 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    handles, labels = [], []
    for ax, index in zip(axes.ravel(), panels):
        for group, style in _curves(frame, index):
            line, = ax.plot(group["selectivity"], group["p50_ms"], **style)
            if style["label"] not in labels:
                handles.append(line)
                labels.append(style["label"])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(index, fontsize=10.5)
        ax.set_ylabel("p50 latency per query, ms")
        _selectivity_axis(ax, frame)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    _legend(fig, handles, labels)
    fig.suptitle(_title(frame, "Filtered search, median latency (lower is better)"), fontsize=11)
    return save_png(fig, path)


def plot_sweep(frame: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Both figures of a sweep into ``out_dir``: ``filtered_recall.png`` and ``filtered_latency.png``."""
    out_dir = Path(out_dir)
    return {"recall": plot_recall(frame, out_dir / "filtered_recall.png"),
            "latency": plot_latency(frame, out_dir / "filtered_latency.png")}

