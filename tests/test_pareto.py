"""Pareto frontiers and the best-QPS-at-recall table on hand-written points."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.bench.pareto import best_at_recall, frontier, overlaps, pareto_mask, ranked_frame, summary_table


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
    assert s["A"]["0.90"] == {"point": "a2", "recall": 0.92, "qps": 6000, "rank": 1, "tied_with": []}
    assert s["B"]["0.90"] is None and s["A"]["0.99"] is None


def with_intervals() -> pd.DataFrame:
    """Three families at recall >= 0.9: A [900, 1100], B [1050, 1300] (overlaps A), C [400, 500] (apart)."""
    return pd.DataFrame({
        "family": ["A", "A", "B", "C"], "point": ["a1", "a2", "b1", "c1"],
        "recall": [0.95, 0.85, 0.93, 0.99], "qps": [1000, 5000, 1200, 450],
        "qps_lo": [900, 4000, 1050, 400], "qps_hi": [1100, 6000, 1300, 500]})


def test_ranks_and_ties_where_intervals_overlap():
    s = summary_table(with_intervals(), targets=(0.9, 0.99))
    cells = {fam: s[fam]["0.90"] for fam in "ABC"}
    assert [cells[f]["rank"] for f in "BAC"] == [1, 2, 3]
    assert cells["A"]["tied_with"] == ["B"] and cells["B"]["tied_with"] == ["A"] and cells["C"]["tied_with"] == []
    assert (cells["A"]["qps_lo"], cells["A"]["qps_hi"]) == (900, 1100)
    assert s["C"]["0.99"]["rank"] == 1 and s["A"]["0.99"] is None
    # touching ends count as overlapping; an old cell without an interval is the point at its QPS
    assert overlaps({"qps": 1, "qps_lo": 0, "qps_hi": 2}, {"qps": 3, "qps_lo": 2, "qps_hi": 4})
    assert not overlaps({"qps": 1}, {"qps": 3, "qps_lo": 2, "qps_hi": 4})
    # 100..104 and 108..112 are apart within one run, not once each is widened by the rerun noise (6%)
    near, far = {"qps": 102, "qps_lo": 100, "qps_hi": 104}, {"qps": 110, "qps_lo": 108, "qps_hi": 112}
    assert overlaps(near, far) and not overlaps(near, far, margin=0.0)
    assert not overlaps(near, {"qps": 130, "qps_lo": 125, "qps_hi": 135})
    r = ranked_frame(s)
    assert r[["target", "rank", "family", "tied_with"]].values.tolist() == [
        ["0.90", 1, "B", "≈ A"], ["0.90", 2, "A", "≈ B"], ["0.90", 3, "C", ""], ["0.99", 1, "C", ""]]


def test_report_table_marks_ties_and_lists_them():
    from workbench.report.sections import best_qps_table

    table = best_qps_table(summary_table(with_intervals(), targets=(0.9, 0.95, 0.99)))
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["B"][0] == "1,200 #1 ≈" and rows["A"][0] == "1,000 #2 ≈" and rows["C"][0] == "450 #3"
    assert rows["A"][2] == "–" and {1, 2, 3} <= table.numeric   # right-aligned: figures with their marks
    assert "(at 0.90: A ≈ B)" in table.note and "not distinguishable" in table.note
    # a results.json of before issue 13 (no rank, no interval) still renders
    old = best_qps_table({"A": {"0.90": {"point": "a", "qps": 10.0, "recall": 0.9}}})
    assert old.rows == [["A", "10", "–", "–"]]
