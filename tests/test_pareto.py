"""Pareto frontiers and the best-QPS-at-recall table on hand-written points."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.bench.pareto import best_at_recall, frontier, pareto_mask, summary_table


def test_pareto_mask_hand_written():
    recall = [0.5, 0.9, 0.8, 0.95, 0.95, 0.99]
    qps = [1000, 800, 700, 500, 400, 100]
    # (0.8, 700) is dominated by (0.9, 800); (0.95, 400) by (0.95, 500)
    assert pareto_mask(recall, qps).tolist() == [True, True, False, True, False, True]
    # lower-is-better y (e.g. build time): (0.9, 5) dominates (0.8, 7)
    assert pareto_mask([0.8, 0.9, 0.99], [7, 5, 9], y_higher=False).tolist() == [False, True, True]
    assert pareto_mask([0.9, 0.9], [10, 10]).tolist() == [True, True]          # exact ties both stay


def points() -> pd.DataFrame:
    return pd.DataFrame({
        "family": ["A"] * 4 + ["B"] * 3,
        "point": ["a1", "a2", "a3", "a4", "b1", "b2", "b3"],
        "recall": [0.85, 0.92, 0.96, 0.91, 0.50, 0.70, 0.89],
        "qps": [9000, 6000, 3000, 5000, 20000, 15000, 10000],
    })


def test_frontier_per_family():
    f = frontier(points())
    assert f["point"].tolist() == ["a1", "a2", "a3", "b1", "b2", "b3"]      # a4 dominated by a2


def test_best_qps_at_recall():
    t = best_at_recall(points(), targets=(0.9, 0.95, 0.99))
    a = t[t["family"] == "A"].set_index("target")
    assert a.loc[0.9, "point"] == "a2" and a.loc[0.95, "point"] == "a3" and pd.isna(a.loc[0.99, "point"])
    assert np.isnan(a.loc[0.99, "qps"])
    s = summary_table(points())
    assert s["A"]["0.90"] == {"point": "a2", "recall": 0.92, "qps": 6000}
    assert s["B"]["0.90"] is None and s["A"]["0.99"] is None
