"""The tuner (``workbench tune``) on a small synthetic set: its recommendation meets the recall target
against brute force, hopeless builds are pruned, a rerun continues the study, limits hold, bad input is
refused in one line. Budgets are a few trials; nothing asserts on time."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from workbench.bench.data import load_bench_data
from workbench.bench.results import read_results
from workbench.bench.tune import TuneSettings, open_study, parse_budget, run_study, sweep_to_target
from workbench.bench.tune_space import Candidate, check_families
from workbench.cli import main
from workbench.errors import TuneError
from workbench.index.spec import parse_spec
from workbench.runners.tune import JOURNAL, run_tune
from workbench.tracking.sink import CollectingSink
from workbench.vectors.kernel import exact_topk

DATA = "synthetic:n=2000,dim=16,queries=60,clusters=20,seed=3"


@pytest.fixture(scope="module")
def data():
    return load_bench_data(DATA, progress=False)


def settings(**kw) -> TuneSettings:
    base = dict(recall=0.9, budget_s=600, families="hnswlib,faiss-hnsw", build_threads=1, runs=1, warmup=10,
                point_budget_s=0.05, max_trials=3)
    return TuneSettings(**{**base, **kw})


def test_recommendation_meets_the_target_against_brute_force(data, tmp_path):
    sink = CollectingSink()
    result = run_tune(data, tmp_path, settings(), sink=sink, progress=False)
    rec = result.recommended
    assert rec is not None and rec["recall"] >= 0.9
    spec = parse_spec(rec["spec"])                 # library:build?query, rebuilt as a user would
    index = spec.make(data.metric)
    index.set_threads(1)
    index.build(data.base)
    _, ids = index.search(data.queries, 10, **spec.points()[0])
    _, exact = exact_topk(data.base, data.queries, 10, data.metric)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist())])
    assert recall >= 0.9
    # every measured point went to results.parquet and the sink, inside one sweep
    stored = read_results(tmp_path / "results.parquet")
    assert len(stored) == len(sink.points) == result.summary["n_points"] > 0
    assert len(sink.sweeps) == 1 and sink.attached[-1]["metrics"]["recommended_qps"] == rec["qps"]
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert json.loads((tmp_path / "tune.json").read_text())["recommended"]["spec"] == rec["spec"]


def test_a_build_that_cannot_reach_the_target_is_pruned(data, tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / JOURNAL)))
    s = settings(recall=1.0, families="usearch", max_trials=1).checked()
    # i8 codes round every component to 1/127: the exact top-10 is out of reach at any ef
    i8 = {"family": "usearch", "usearch.M": 8, "usearch.ef_construction": 64, "usearch.dtype": "i8"}
    study = open_study(storage, data, s, starts=[i8])
    run_study(study, data, s, progress=False)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert "below the target" in trial.user_attrs["pruned_because"] and trial.user_attrs["max_recall"] < 1.0


def test_sweep_stops_at_the_first_point_reaching_the_target():
    ladder = (1, 2, 4, 8, 16, 32)
    seen = []

    def probe(qp):
        seen.append(dict(qp))
        return {"recall": min(1.0, 0.1 * qp["ef"] * qp.get("x", 1)), "qps": 1000.0 / qp["ef"], "point": str(qp)}

    found, top = sweep_to_target(probe, Candidate("hnswlib:M=8", "ef", ladder, ({"x": 1}, {"x": 2})), 0.75)
    assert [r["point"] for r in found] == [str({"ef": 8, "x": 1}), str({"ef": 4, "x": 2})]
    assert seen[0] == {"ef": 32, "x": 2} and top == 1.0             # maximum effort first
    hopeless, top = sweep_to_target(probe, Candidate("hnswlib:M=8", "ef", (1, 2), ({},)), 0.75)
    assert hopeless == [] and top == pytest.approx(0.2)


def test_a_rerun_continues_the_study(data, tmp_path):
    def finished(result):      # enqueued start-up trials not run yet wait in the study as WAITING
        t = result.trials[result.trials["state"].isin(["COMPLETE", "PRUNED"])]
        return [(r["trial"], r["spec"], r["qps"]) for r in t.to_dict("records")]

    before = finished(run_tune(data, tmp_path, settings(max_trials=2), progress=False))
    rows = len(read_results(tmp_path / "results.parquet"))
    after = finished(run_tune(data, tmp_path, settings(max_trials=2), progress=False))
    assert len(before) == 2 and len(after) == 4 and after[:2] == before
    assert len(read_results(tmp_path / "results.parquet")) >= rows


def test_memory_limit_is_respected(data, tmp_path):
    # the first trial, faiss HNSW32,SQ8, holds d code bytes + 2M links of 4 bytes a vector (~0.53 MiB here);
    # hnswlib M=12 8M + 4 + 4d + 8 bytes (~0.33 MiB)
    result = run_tune(data, tmp_path, settings(memory_mb=0.45, max_trials=4), progress=False)
    trials = result.trials
    over = trials[trials["pruned_because"].fillna("").str.startswith("over a limit")]
    assert len(over) >= 1 and (over["size_mb"] > 0.45).all()
    assert (trials.loc[trials["state"] == "COMPLETE", "size_mb"] <= 0.45).all()
    assert result.recommended is not None and result.recommended["size_mb"] <= 0.45


@pytest.mark.parametrize("kw, message", [
    ({"recall": 1.5}, "recall target 1.5 must lie in (0, 1]"),
    ({"recall": 0}, "must lie in (0, 1]"),
    ({"families": "hnswlib,annoy"}, "unknown tuner family annoy"),
    ({"budget_s": "ten minutes"}, "is not a duration"),
    ({"memory_mb": -1}, "memory-mb limit -1 must be a positive number"),
])
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(TuneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TuneSettings(**kw).checked()


def test_budget_and_families_parse():
    assert parse_budget("10m") == 600 and parse_budget("1h30m") == 5400 and parse_budget("90s") == 90
    assert parse_budget("600") == 600 and parse_budget(0) == 0
    assert check_families(" scann , hnswlib,scann") == ("scann", "hnswlib")
    for bad in ("", "10 minutes", "m", "-5s"):
        with pytest.raises(TuneError):
            parse_budget(bad)


@pytest.mark.parametrize("args, message", [
    (["--recall", "2"], "error: recall target 2.0 must lie in (0, 1]"),
    (["--families", "annoy"], "error: unknown tuner family annoy"),
    (["--budget", "soon"], "error: budget 'soon' is not a duration"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    assert main(["tune", DATA, "--out", str(tmp_path), "--no-track", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1


def test_compare_measures_defaults_and_the_recommendation_side_by_side(data, tmp_path):
    result = run_tune(data, tmp_path, settings(max_trials=2, warmup=5), progress=False, with_compare=True,
                      rounds=2, grid=True)
    c = json.loads((tmp_path / "compare.json").read_text())
    names = [cfg["name"] for cfg in c["configs"]]
    assert names == ["hnswlib", "faiss", "usearch", "scann", "tuned"]
    assert set(c["ratios"]) == {"hnswlib", "faiss", "usearch", "scann"}
    for cfg in c["configs"]:
        if cfg["reached"]:
            assert cfg["recall"] >= 0.9 and cfg["qps_lo"] <= cfg["qps"] <= cfg["qps_hi"]
            assert all(p["rounds"] == 2 for p in cfg["points"])
    tuned = c["configs"][-1]
    assert tuned["spec"] == result.recommended["build"]
    assert c["grid"]["n_points"] > 0 and c["grid"]["best_qps"] > 0
    assert (tmp_path / "compare.png").stat().st_size > 0 and result.comparison == c
