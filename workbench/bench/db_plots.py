"""Figures of the database experiments (``pg_filtered``, ``concurrency``, ``pg_tiered``, ``pg_updates``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench.plotting import pyplot, save_png


def _selectivity_axis(ax, values) -> None:
    ticks = sorted(set(values))
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * t:g}%" for t in ticks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("selectivity")
    ax.grid(True, alpha=0.3)


def plot_db_filtered(frame: pd.DataFrame, path: str | Path) -> Path:
    """Recall, share of short results and p50 latency against selectivity: in-database curves solid,
    in-process ones (``in_database`` False, from ``bench.filtered``) dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), layout="constrained")
    curves = list(dict.fromkeys(frame["curve"]))
    cmap = plt.get_cmap("tab20")
    for i, curve in enumerate(curves):
        g = frame[frame["curve"] == curve].sort_values("selectivity")
        inside = bool(g["in_database"].iloc[0])
        style = {"color": cmap(i % 20), "marker": "o" if inside else "^", "markersize": 4,
                 "linestyle": "-" if inside else "--", "label": curve + ("" if inside else " (in-process)")}
        for ax, col in zip(axes, ("recall", "frac_short", "p50_ms")):
            ax.plot(g["selectivity"], g[col], **style)
    k = int(frame["k"].iloc[0])
    for ax, ylabel in zip(axes, (f"recall@{k} (vs exact on the subset)", f"share of queries with < {k} rows",
                                 "p50 latency, ms (log)")):
        _selectivity_axis(ax, frame["selectivity"])
        ax.set_ylabel(ylabel)
    axes[0].set_ylim(-0.03, 1.05)
    axes[1].set_ylim(-0.05, 1.05)
    axes[2].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    first = frame.iloc[0]
    fig.suptitle(f"Filtered search in the database and in process: {first['dataset']} ({int(first['n_base']):,} "
                 f"vectors, {int(first['n_queries'])} queries), k={k}, one query at a time", fontsize=11)
    return save_png(fig, path)


def plot_concurrency(frame: pd.DataFrame, path: str | Path) -> Path:
    """QPS and p99 latency against the number of concurrent clients, one line per index point."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    for point, g in frame.groupby("point", sort=False):
        g = g.sort_values("clients")
        label = f"{point} (recall {g['recall'].iloc[0]:.3f})"
        left.plot(g["clients"], g["qps"], marker="o", label=label)
        right.plot(g["clients"], g["p99_ms"], marker="o", label=label)
    for ax, ylabel in ((left, "QPS (all clients)"), (right, "p99 latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(frame["clients"].unique()))
        ax.set_xticklabels([str(c) for c in sorted(frame["clients"].unique())])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False, ncol=2)
    return save_png(fig, path)


def _bars(ax, labels: list[str], values: np.ndarray, ylabel: str, log: bool = False) -> None:
    ax.bar(range(len(labels)), values, color=[f"C{i}" for i in range(len(labels))])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)


def plot_tiered(frame: pd.DataFrame, path: str | Path) -> Path:
    """Recall, short results and p50 latency of each (layout, scope) case."""
    plt = pyplot()
    labels = [f"{r.layout} / {r.scope}" + (f"\n{r.iterative_scan}" if r.iterative_scan != "off" else "")
              for r in frame.itertuples()]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    _bars(axes[0], labels, frame["recall"].to_numpy(), "recall@k (vs exact on the scope)")
    _bars(axes[1], labels, frame["frac_short"].to_numpy(), "share of queries with < k rows")
    _bars(axes[2], labels, frame["p50_ms"].to_numpy(), "p50 latency, ms")
    fig.suptitle("Tiered storage: quarterly partitions + archive, each with its own HNSW, vs one big index",
                 fontsize=11)
    return save_png(fig, path)


def plot_updates(frame: pd.DataFrame, path: str | Path) -> Path:
    """Recall and p50 latency through the stages, one line per index point."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for (index, qp), g in frame.groupby(["family", "query_params"], sort=False):
        label = f"{index} {qp}".strip()
        left.plot(g["stage"], g["recall"], marker="o", label=label)
        right.plot(g["stage"], g["p50_ms"], marker="o", label=label)
    left.set_ylabel("recall@k (vs exact on the live rows)")
    right.set_ylabel("p50 latency, ms")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("stage")
    left.legend(fontsize=8)
    n = frame.iloc[0]
    fig.suptitle(f"After deleting {int(frame['n_deleted'].max()):,} rows and inserting {int(frame['n_inserted'].max()):,}"
                 f" ({int(n['n_live']):,} live rows)", fontsize=11)
    return save_png(fig, path)
