"""Figures of the hybrid evaluation (matplotlib): nDCG@10 against the fusion weight, per-query wins
and losses; and ``weight_view``, the plain function behind the notebook's weight slider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from workbench.plotting import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from workbench.hybrid.experiment import HybridResults

NORM_LABELS = {"tmm": "theoretical min-max", "minmax": "min-max", "zscore": "z-score"}


def weight_view(results: Mapping[str, "HybridResults"], weight: float, norm: str = "tmm") -> pd.DataFrame:
    """nDCG@10 (all queries, in-sample) of the convex combination ``weight * BM25 + (1 - weight) * dense``
    with ``norm`` at the grid point nearest ``weight``, next to the single retrievers and RRF."""
    rows = []
    for name, res in results.items():
        curve = res.weight_curve[res.weight_curve["norm"] == norm]
        at = curve.iloc[int(np.argmin(np.abs(curve["weight"].to_numpy() - weight)))]
        m = res.metrics
        best = max(m["bm25"]["ndcg@10"], m["dense"]["ndcg@10"])
        rows.append({"dataset": name, "weight": float(at["weight"]), "norm": norm,
                     "convex ndcg@10": float(at["ndcg@10"]), "bm25": m["bm25"]["ndcg@10"],
                     "dense": m["dense"]["ndcg@10"], "rrf": m["rrf"]["ndcg@10"],
                     "vs best single": float(at["ndcg@10"]) - best})
    return pd.DataFrame(rows).set_index("dataset")


def plot_weight_curves(results: Mapping[str, "HybridResults"], path: str | Path | None = None,
                       mark: float | None = None) -> "Figure":
    """One panel per collection: nDCG@10 against the BM25 weight for each normalisation, with the single
    retrievers and RRF (k=60) as horizontal lines; ``mark`` draws the slider's weight."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results) + 2.2, 3.8), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for norm, group in res.weight_curve.groupby("norm", sort=False):
            ax.plot(group["weight"], group["ndcg@10"], marker="o", ms=3, label=f"convex, {NORM_LABELS[norm]}")
        m = res.metrics
        for method, style in (("bm25", ":"), ("dense", "--"), ("rrf", "-.")):
            ax.axhline(m[method]["ndcg@10"], color="grey", ls=style, lw=1,
                       label={"rrf": "RRF k=60"}.get(method, method.upper() if method == "bm25" else method))
        if mark is not None:
            ax.axvline(mark, color="black", lw=0.8)
        ax.set_title(f"{name} ({res.payload['n_queries']} queries)")
        ax.set_xlabel("BM25 weight w (dense 1 - w)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("nDCG@10 (all queries)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Convex combination of BM25 and MiniLM dense: nDCG@10 vs fusion weight (in-sample)")
    fig.tight_layout()
    if path is not None:
        save_png(fig, path, close=False)
    return fig


def wins_losses(results: Mapping[str, "HybridResults"], method: str = "convex") -> pd.DataFrame:
    """Per collection: queries where ``method`` beats, ties or loses to each single retriever (nDCG@10)."""
    rows = []
    for name, res in results.items():
        for base in ("bm25", "dense"):
            c = res.payload["significance"][method][base]
            rows.append({"dataset": name, "method": method, "baseline": base, "wins": c["wins"], "ties": c["ties"],
                         "losses": c["losses"], "delta ndcg@10": c["delta"], "p (randomization)": c["p_randomization"],
                         "p (t-test)": c["p_ttest"]})
    return pd.DataFrame(rows)


def plot_per_query_differences(results: Mapping[str, "HybridResults"], method: str = "convex",
                               path: str | Path | None = None) -> "Figure":
    """Per-query nDCG@10 of ``method`` minus the best single retriever, sorted: bars above 0 are wins."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        base = res.payload["best_single"]
        d = np.sort(res.per_query[method]["ndcg@10"].to_numpy() - res.per_query[base]["ndcg@10"].to_numpy())[::-1]
        colors = np.where(d > 1e-9, "tab:green", np.where(d < -1e-9, "tab:red", "tab:grey"))
        ax.bar(np.arange(len(d)), d, color=colors, width=1.0)
        wins, ties, losses = int((d > 1e-9).sum()), int((np.abs(d) <= 1e-9).sum()), int((d < -1e-9).sum())
        ax.set_title(f"{name}: {method} vs {base}\n{wins} wins / {ties} ties / {losses} losses")
        ax.set_xlabel("queries, sorted")
        ax.axhline(0, color="black", lw=0.6)
    axes[0, 0].set_ylabel("nDCG@10 difference")
    fig.tight_layout()
    if path is not None:
        save_png(fig, path, close=False)
    return fig


def plot_method_scores(table: pd.DataFrame, path: str | Path | None = None, title: str = "") -> "Figure":
    """Grouped bars: one group per metric (columns of ``table``), one bar per method (its index)."""
    plt = pyplot()
    metrics, methods = list(table.columns), list(table.index)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) + 3, 3.6))
    for i, method in enumerate(methods):
        xs = np.arange(len(metrics)) + (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(xs, table.loc[method].to_numpy(dtype=float), width, label=method)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.set_ylabel("score (all judged queries)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        save_png(fig, path, close=False)
    return fig
