"""`workbench ann-spread`: the spread of the medians and the ranking check on hand-written reruns, then the
command end to end on a small set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.bench.spread import point_spread, ranking_consistency
from workbench.cli import main
from workbench.vectors.formats import save_npz, synthetic_clusters


def rerun(qps_a: float, qps_b: float, width: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame({"family": ["A", "B"], "point": ["a", "b"], "recall": [0.96, 0.97],
                         "qps": [qps_a, qps_b], "qps_lo": [qps_a * (1 - width), qps_b * (1 - width)],
                         "qps_hi": [qps_a * (1 + width), qps_b * (1 + width)]})


def test_point_spread_hand_computed():
    s = point_spread([rerun(100, 200), rerun(120, 200), rerun(80, 190)]).set_index("point")
    assert (s.loc["a", "qps_min"], s.loc["a", "qps_max"], s.loc["a", "qps_median"]) == (80, 120, 100)
    assert s.loc["a", "rel_spread"] == pytest.approx(0.4) and s.loc["b", "rel_spread"] == pytest.approx(0.05)
    assert s.loc["a", "rel_interval"] == pytest.approx(0.2) and s.loc["a", "medians"] == [100, 120, 80]
    # a point missing from one rerun has no spread
    assert point_spread([rerun(1, 2), rerun(1, 2).iloc[:1]])["point"].tolist() == ["a"]


def table(qps_a: float | None, qps_b: float, tied: bool) -> dict:
    cell_b = {"qps": qps_b, "tied_with": ["A"] if tied else []}
    cell_a = None if qps_a is None else {"qps": qps_a, "tied_with": ["B"] if tied else []}
    return {"A": {"0.95": cell_a}, "B": {"0.95": cell_b}}


def test_ranking_is_checked_only_for_pairs_marked_different():
    same = ranking_consistency([table(100, 200, False), table(110, 190, False)], targets=(0.95,))["0.95"]
    assert same["pairs"] == 1 and same["consistent"] and same["checked"][0]["faster_per_rerun"] == ["B", "B"]
    # tied in every rerun: nothing to check, even though the order flips
    assert ranking_consistency([table(100, 101, True), table(102, 101, True)], targets=(0.95,))["0.95"]["pairs"] == 0
    # marked different in one rerun, reordered in another: inconsistent
    flip = ranking_consistency([table(100, 200, False), table(210, 200, True)], targets=(0.95,))["0.95"]
    assert not flip["consistent"] and flip["inconsistent"][0]["marked_different_in"] == [0]
    assert flip["inconsistent"][0]["faster_per_rerun"] == ["B", "A"]
    # a family that misses the target in a rerun leaves the order unknown: inconsistent
    assert not ranking_consistency([table(100, 200, False), table(None, 200, False)], targets=(0.95,))["0.95"][
        "consistent"]


def test_ann_spread_command(tmp_path, capsys):
    vs = synthetic_clusters(n=800, dim=8, n_queries=30, n_clusters=8, seed=3, metric="l2")
    npz = str(save_npz(vs, tmp_path / "s.npz"))
    out = tmp_path / "spread"
    assert main(["ann-spread", npz, "--index", "faiss:Flat", "--index", "faiss:IVF8,Flat?nprobe=1,8",
                 "--reruns", "2", "--runs", "3", "--k", "5", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reruns"] == 2 and len(summary["points"]) == 3
    assert len(summary["rerun_seconds"]) == 2 and all(t > 0 for t in summary["rerun_seconds"])
    for i in range(2):
        assert len(pd.read_parquet(out / f"rerun-{i}" / "results.parquet")) == 3
    assert json.loads((out / "spread.json").read_text())["ranking"].keys() == {"0.90", "0.95", "0.99"}
    assert (out / "spread.png").stat().st_size > 0
    assert all(p["qps_min"] <= p["qps_median"] <= p["qps_max"] for p in summary["points"])
    # run again: every point is read back, and each rerun keeps the grid time it took
    assert main(["ann-spread", npz, "--index", "faiss:Flat", "--index", "faiss:IVF8,Flat?nprobe=1,8",
                 "--reruns", "2", "--runs", "3", "--k", "5", "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["rerun_seconds"]
    assert again[0] >= summary["rerun_seconds"][0] and again[1] >= summary["rerun_seconds"][1]
    (out / "rerun-0" / "grid_seconds.json").write_text("{not json")
    assert main(["ann-spread", npz, "--index", "faiss:Flat", "--index", "faiss:IVF8,Flat?nprobe=1,8",
                 "--reruns", "2", "--runs", "3", "--k", "5", "--out", str(out)]) == 2
    assert "grid_seconds.json: not a grid time record" in capsys.readouterr().err
    assert main(["ann-spread", npz, "--index", "faiss:Flat", "--reruns", "1", "--out", str(out)]) == 2
    assert "at least 2 reruns" in capsys.readouterr().err
