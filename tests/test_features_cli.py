"""`workbench features` commands on tiny inputs, and the leakage demo's helpers."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd

from workbench.cli import main
from workbench.features.leakage import (
    build_store,
    fit_logistic,
    leakage_experiment,
    predict,
    roc_auc,
)
from workbench.features.synth import EPOCH, fraud_stream


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_methods_agree(tmp_path, capsys):
    out = run_json(capsys, ["features", "bench", "--entities", "3000", "--features", "40000", "--updates-per-key", "20",
                            "--sample", "300", "--threads", "1", "--no-track", "--json", "--out", str(tmp_path)])
    res = {r["method"]: r for r in out["results"]}
    assert set(res) == {"duckdb_2views", "duckdb_1view", "merge_asof_1view", "range_join_sample"}
    assert all("error" not in r for r in res.values())
    assert res["merge_asof_1view"]["agrees_with_duckdb"] and res["range_join_sample"]["agrees_with_duckdb"]
    assert res["duckdb_2views"]["rows"] == 3000 and res["range_join_sample"]["rows"] == 300
    assert json.loads((tmp_path / "bench.json").read_text())["n_features"] == 40000
    assert out["written"] == str(tmp_path / "bench.json")


def test_sweep_and_out_of_core(tmp_path, capsys):
    out = run_json(capsys, ["features", "sweep", "--entities", "1000", "--features", "10000", "--updates", "5,500",
                            "--sample", "200", "--threads", "1", "--no-track", "--json", "--out", str(tmp_path)])
    assert {r["updates_per_key"] for r in out["results"]} == {5, 500}
    assert all(r.get("agrees_with_duckdb", True) for r in out["results"])
    out = run_json(capsys, ["features", "ooc", "--rows", "200000", "--entities", "5000", "--memory-limit", "30MB",
                            "--threads", "1", "--no-track", "--json", "--out", str(tmp_path)])
    assert out["rows"] == 5000 and out["peak_spill_bytes"] >= 0 and out["matched_fraction"] > 0.9


def test_bad_arguments_are_errors(capsys):
    assert main(["features", "bench", "--entities", "0", "--no-track"]) == 2
    assert "argument --entities: must be a positive integer (1 or more), got 0" in capsys.readouterr().err
    assert main(["features", "sweep", "--updates", "10,x", "--no-track"]) == 2


def test_roc_auc_against_pair_count():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert abs(roc_auc(y, s) - pairs) < 1e-12


def test_logistic_regression_learns_the_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 2))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * X[:, 0] - X[:, 1])))).astype(float)
    m = fit_logistic(X, y)
    assert m["w"][1] > 0 > m["w"][2]
    assert roc_auc(y, predict(m, X)) > 0.8


def test_naive_join_leaks_and_point_in_time_does_not():
    data = fraud_stream(n_accounts=200, days=100, seed=3)
    fs = build_store(data)
    res = leakage_experiment(fs, data["transactions"], EPOCH + timedelta(days=50), timedelta(days=14))
    frames = res["frames"]
    fraud = frames["pit"]["is_fraud"] == 1
    # point-in-time: a fraud's own chargeback (2-12 days later) is never visible at the transaction
    assert (frames["naive"].loc[fraud, "chargebacks_total"] > 0).mean() > 0.9
    assert (frames["pit"].loc[fraud, "chargebacks_total"] <= frames["naive"].loc[fraud, "chargebacks_total"]).all()
    assert res["naive_auc_offline"] > res["pit_auc_offline"]
    assert res["naive_auc_later"] < res["naive_auc_offline"]
    assert isinstance(pd.Timestamp(res["as_of"]), pd.Timestamp)
