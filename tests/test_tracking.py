"""workbench.tracking: store resolution, what a run records, nesting, queries, the outbox, the CLI.

Every test logs to a fresh temporary store (``use_store``), never to the project's ``.mlflow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tracking_support import closed_port, use_store

from workbench.cli import main
from workbench.config import project_root
from workbench.errors import TrackingError, TrackingUnavailableWarning
from workbench.tracking import log_run, parent_run, sync_outbox
from workbench.tracking import store as store_mod
from workbench.tracking.outbox import pending
from workbench.tracking.query import best_run, compare_runs, parse_where, runs_frame
from workbench.tracking.store import Store

DATASET = {"name": "toy", "digest": "ab" * 32, "source": "/data/toy"}


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return use_store(monkeypatch, tmp_path)


def _client(store: Store):
    return store_mod.client(store.uri)


# -- where the store is --------------------------------------------------------------------------------
def test_default_store_is_sqlite_under_project_root():
    default = Store.from_settings({})
    assert default.uri == f"sqlite:///{project_root() / '.mlflow' / 'mlflow.db'}"
    assert default.outbox == project_root() / ".mlflow" / "outbox"
    assert store_mod.artifact_root(default.uri) == (project_root() / ".mlflow" / "artifacts").as_uri()
    server = Store.from_settings({"MLFLOW_TRACKING_URI": "http://tracking.example:5000",
                                  "WORKBENCH_OUTBOX": "/tmp/wb-outbox"})
    assert server == Store("http://tracking.example:5000", Path("/tmp/wb-outbox"))
    assert store_mod.artifact_root(server.uri) is None  # a server chooses its own


def test_notebook_store_choice(tmp_path):
    assert store_mod.choose_store("out_dir", tmp_path) == Store(f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                                tmp_path / "outbox")
    assert store_mod.choose_store("project", tmp_path) == Store.from_settings()
    with pytest.raises(TrackingError, match="store must be one of \\('project', 'out_dir'\\), got 'cloud'"):
        store_mod.choose_store("cloud", tmp_path)


def test_importing_tracking_does_not_import_mlflow():
    code = "import sys, workbench.tracking; print('mlflow' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_experiment_gets_explicit_artifact_location_beside_the_store(store, tmp_path):
    run_id = log_run(store, "hybrid", "r", metrics={"x": 1})
    exp = _client(store).get_experiment_by_name("hybrid")
    assert exp.artifact_location == (tmp_path / "store" / "artifacts" / "hybrid").as_uri()
    assert _client(store).get_run(run_id).info.artifact_uri.startswith(exp.artifact_location)


# -- what a run records --------------------------------------------------------------------------------
def test_log_run_records_params_metrics_tags_dataset_and_artifacts(store, tmp_path):
    results = tmp_path / "results.parquet"
    pd.DataFrame({"recall": [0.9]}).to_parquet(results)
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "pareto.png").write_bytes(b"png")
    run_id = log_run(store, "index-benchmarks", "faiss:HNSW32,Flat efSearch=32",
                     params={"M": 32, "efSearch": 32, "spec": ["a", "b"]},
                     metrics={"recall": 0.95, "qps": np.float32(1234.5), "nan_metric": float("nan"),
                              "not_measured": None},
                     tags={"family": "faiss:HNSW"}, artifacts=[results, plots], dataset=DATASET,
                     command="workbench ann")
    run = _client(store).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "faiss:HNSW32,Flat efSearch=32"
    assert run.data.params == {"M": "32", "efSearch": "32", "spec": '["a", "b"]'}
    assert run.data.metrics["recall"] == 0.95 and run.data.metrics["qps"] == 1234.5
    assert np.isnan(run.data.metrics["nan_metric"])
    tags = run.data.tags
    assert tags["family"] == "faiss:HNSW"
    assert tags["workbench.command"] == "workbench ann" == tags["mlflow.source.name"]
    assert len(tags["mlflow.source.git.commit"]) in (40, len("unknown"))
    assert tags["workbench.git.dirty"] in ("true", "false", "unknown")
    for lib in ("numpy", "faiss", "hnswlib", "torch", "sentence-transformers", "bm25s", "duckdb", "mlflow"):
        assert tags[f"workbench.version.{lib}"], lib
    assert tags["workbench.cpu"] and int(tags["workbench.cores"]) >= 1 and int(tags["workbench.threads"]) >= 1
    assert tags["workbench.dataset.digest"] == DATASET["digest"]
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "toy" and DATASET["digest"].startswith(inp.dataset.digest)
    assert json.loads(inp.dataset.profile)["sha256"] == DATASET["digest"]
    assert json.loads(inp.dataset.source) == {"uri": "/data/toy"}
    listed = {a.path for a in _client(store).list_artifacts(run_id)}
    assert listed == {"results.parquet", "plots"}
    local = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (local / "plots" / "pareto.png").read_bytes() == b"png"


def test_more_params_and_metrics_than_one_batch_holds(store):
    params = {f"p{i}": i for i in range(250)}
    metrics = {f"m{i}": i / 7 for i in range(1900)}
    run = _client(store).get_run(log_run(store, "embeddings", "wide", params=params, metrics=metrics))
    assert len(run.data.params) == 250 and len(run.data.metrics) == 1900
    assert run.data.metrics["m1899"] == pytest.approx(1899 / 7)


@pytest.mark.parametrize("kwargs, message", [
    ({"metrics": {"recall": "high"}}, "metric 'recall'"),
    ({"metrics": {"qps": float("inf")}}, "metric 'qps'"),
    ({"artifacts": ["/nonexistent/results.parquet"]}, "/nonexistent/results.parquet"),
    ({"dataset": {"name": "x"}}, "lacks ['digest']"),
    ({"params": {"big": "x" * 7000}}, "param 'big'"),
])
def test_bad_input_raises_before_touching_the_store(store, kwargs, message):
    with pytest.raises(TrackingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        log_run(store, "hybrid", "bad", **kwargs)
    assert not pending(store.outbox)


def test_sweep_nests_children_under_parent(store):
    with parent_run(store, "index-benchmarks", "sweep", params={"dataset": "toy"}, dataset=DATASET) as parent_id:
        implicit = [log_run(store, "index-benchmarks", f"ef={ef}", params={"ef": ef}, metrics={"recall": ef / 100})
                    for ef in (16, 32)]
        with parent_run(store, "index-benchmarks", "inner") as inner_id:
            nested = log_run(store, "index-benchmarks", "deep", metrics={"recall": 1.0})
        explicit = log_run(store, "index-benchmarks", "explicit", parent_run_id=inner_id)
    c = _client(store)
    assert c.get_run(parent_id).info.status == "FINISHED"
    for run_id in implicit:
        assert c.get_run(run_id).data.tags["mlflow.parentRunId"] == parent_id
    assert c.get_run(inner_id).data.tags["mlflow.parentRunId"] == parent_id
    assert c.get_run(nested).data.tags["mlflow.parentRunId"] == inner_id
    assert c.get_run(explicit).data.tags["mlflow.parentRunId"] == inner_id
    assert "mlflow.parentRunId" not in c.get_run(log_run(store, "index-benchmarks", "after")).data.tags


def test_parent_run_marked_failed_when_the_sweep_raises(store):
    with pytest.raises(RuntimeError, match="boom"):
        with parent_run(store, "hybrid", "sweep") as parent_id:
            raise RuntimeError("boom")
    assert _client(store).get_run(parent_id).info.status == "FAILED"


def test_locked_database_is_retried(monkeypatch):
    monkeypatch.setattr(store_mod, "LOCK_RETRY_DELAYS", (0.0, 0.0, 0.0))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert store_mod.with_retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):  # other errors are not retried
        store_mod.with_retry(lambda: (_ for _ in ()).throw(ValueError("no")))


def test_store_locked_beyond_retries_keeps_run_in_outbox(store, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setattr(store_mod, "LOCK_RETRY_DELAYS", (0.0, 0.0))

    def locked(*args, **kwargs):
        raise RuntimeError("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(MlflowClient, "log_batch", locked)
    with pytest.warns(TrackingUnavailableWarning, match="database is locked"):
        assert log_run(store, "hybrid", "locked", params={"a": 1}, metrics={"x": 2}) is None
    assert len(pending(store.outbox)) == 1
    # the half-written run was deleted, so the later sync leaves exactly one copy
    monkeypatch.undo()
    report = sync_outbox(store)
    assert len(report.logged) == 1 and not pending(store.outbox)
    df = runs_frame(store, "hybrid")
    assert list(df["run_name"]) == ["locked"] and df["params.a"].tolist() == ["1"]


# -- unreachable store: finish, say so, keep, sync later ---------------------------------------------------
def test_unreachable_sqlite_store_keeps_run_in_outbox_and_sync_logs_it(store, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store folder should be")
    bad = Store(f"sqlite:///{blocker / 'mlflow.db'}", store.outbox)
    artifact = tmp_path / "run.trec"
    artifact.write_text("q1 Q0 d1 1 0.5 x\n")
    with pytest.warns(TrackingUnavailableWarning, match="workbench runs sync") as caught:
        assert log_run(bad, "hybrid", "bm25", params={"k1": 1.2}, metrics={"ndcg@10": 0.41}, artifacts=[artifact],
                       dataset=DATASET, command="workbench hybrid") is None
    assert str(blocker) in str(caught[0].message)
    (entry,) = pending(store.outbox)
    saved = json.loads(entry.read_text())
    assert saved["params"] == {"k1": "1.2"} and saved["artifacts"] == [str(artifact)]
    assert saved["tags"]["workbench.command"] == "workbench hybrid" and saved["tracking_uri"] == bad.uri

    report = sync_outbox(store)
    assert not report.failed, report.failed
    assert not pending(store.outbox) and list(report.logged) == [str(entry)]
    run = _client(store).get_run(report.logged[str(entry)])
    assert run.info.run_name == "bm25" and run.data.metrics == {"ndcg_at_10": 0.41}  # '@' is refused by MLflow
    assert best_run(store, "hybrid", "ndcg@10")["run_id"] == run.info.run_id
    assert run.data.tags["workbench.dataset.digest"] == DATASET["digest"]
    assert [a.path for a in _client(store).list_artifacts(run.info.run_id)] == ["run.trec"]
    assert sync_outbox(store).logged == {}  # nothing left: a second sync logs nothing twice


def test_unreachable_server_sweep_is_queued_and_sync_restores_nesting(store):
    dead = Store(f"http://127.0.0.1:{closed_port()}", store.outbox)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with parent_run(dead, "index-benchmarks", "sweep") as parent_id:
            children = [log_run(dead, "index-benchmarks", f"ef={ef}", metrics={"recall": ef / 64})
                        for ef in (16, 32, 64)]
    assert parent_id is None and children == [None, None, None]
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingUnavailableWarning)]
    assert len(messages) == 1 and "3 child runs" in messages[0]  # one warning for the sweep, not one per run
    assert len(pending(store.outbox)) == 4

    damaged = pending(store.outbox)[0].with_name("20000101T000000-000-damaged.json")
    damaged.write_text("{not json")
    report = sync_outbox(store)
    assert len(report.logged) == 4 and list(report.failed) == [str(damaged)]
    assert pending(store.outbox) == [damaged]  # kept for a look; everything else was logged
    df = runs_frame(store, "index-benchmarks")
    parent = df[df["run_name"] == "sweep"].iloc[0]
    assert parent["status"] == "FINISHED"
    kids = df[df["run_name"] != "sweep"]
    assert sorted(kids["run_name"]) == ["ef=16", "ef=32", "ef=64"]
    assert set(kids["tags.mlflow.parentRunId"]) == {parent["run_id"]}


def test_cli_command_finishes_when_store_unreachable_then_runs_sync(store, tmp_path, capsys):
    dead = f"http://127.0.0.1:{closed_port()}"
    with pytest.warns(TrackingUnavailableWarning, match="2 child runs kept"):
        rc = main(["tracking-bench", "--configs", "2", "--uri", dead, "--out", str(tmp_path), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs_queued"] == 2 and result["runs_in_store"] == 0
    assert len(pending(store.outbox)) == 3
    assert Store.from_settings() == store  # the command chose its store without touching the settings
    assert main(["runs", "sync", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["logged"]) == 3
    assert len(runs_frame(store, "tracking-bench")) == 3 and not pending(store.outbox)


# -- queries ------------------------------------------------------------------------------------------
@pytest.fixture
def sweep(store) -> pd.DataFrame:
    """12 runs with random recall/qps; returns the reference table (pandas, independent of mlflow)."""
    rng = np.random.default_rng(7)
    rows = []
    with parent_run(store, "index-benchmarks", "sweep"):
        for i in range(12):
            row = {"run_name": f"cfg{i}", "k": 10 if i % 2 else 100, "recall": float(rng.uniform(0.8, 1.0)),
                   "qps": float(rng.uniform(100, 5000))}
            row["run_id"] = log_run(store, "index-benchmarks", row["run_name"], params={"k": row["k"]},
                                    metrics={"recall": row["recall"], "qps": row["qps"]})
            rows.append(row)
    return pd.DataFrame(rows)


def test_best_run_under_constraint_matches_pandas(store, sweep):
    ok = sweep[sweep["recall"] >= 0.9]
    assert best_run(store, "index-benchmarks", "qps", "recall>=0.9")["run_id"] == ok.loc[ok["qps"].idxmax(), "run_id"]
    ok = sweep[(sweep["recall"] >= 0.85) & (sweep["k"] == 10)]
    got = best_run(store, "index-benchmarks", "qps", "recall >= 0.85 and params.k = 10")
    assert got["run_id"] == ok.loc[ok["qps"].idxmax(), "run_id"]
    got = best_run(store, "index-benchmarks", "recall", "qps>1000", mode="min")
    ok = sweep[sweep["qps"] > 1000]
    assert got["run_id"] == ok.loc[ok["recall"].idxmin(), "run_id"]


def test_best_run_errors_name_the_problem(store, sweep):
    with pytest.raises(TrackingError, match="none of them qualify"):
        best_run(store, "index-benchmarks", "qps", "recall>=1.5")
    with pytest.raises(TrackingError, match="no metric, param or tag 'latency'.*'qps'"):
        best_run(store, "index-benchmarks", "latency")
    with pytest.raises(TrackingError, match="at position 8 expected an operator"):
        best_run(store, "index-benchmarks", "qps", "recall ~ 0.9")
    with pytest.raises(TrackingError, match="no experiment 'nope'"):
        runs_frame(store, "nope")


def test_parse_where():
    assert parse_where("recall>=0.95 and qps > 100 AND params.k=10") == [
        ("recall", ">=", 0.95), ("qps", ">", 100.0), ("params.k", "=", 10.0)]
    assert parse_where(None) == []
    for bad, position in (("recall<<0.5", 8), ("recall>0.5 or qps>1", 12), ("recall>0.5, qps>1", 11),
                          ("recall>high", 8), ("recall>nan", 8)):
        with pytest.raises(TrackingError, match=f"at position {position} "):
            parse_where(bad)


def test_compare_runs_side_by_side(store, sweep):
    a, b = sweep["run_id"][0], sweep["run_id"][1]
    table = compare_runs(store, [a, b])
    assert list(table.columns) == [f"cfg0 ({a[:8]})", f"cfg1 ({b[:8]})", "differs"]
    assert table.loc["params.k"].tolist()[:2] == ["100", "10"] and table.loc["params.k", "differs"]
    assert table.loc["metrics.recall"].iloc[0] == pytest.approx(sweep["recall"][0])
    with pytest.raises(TrackingError, match="no run 'missing'"):
        compare_runs(store, ["missing"])


def test_runs_frame_excludes_parents_on_request(store, sweep):
    assert len(runs_frame(store, "index-benchmarks")) == 13
    assert len(runs_frame(store, "index-benchmarks", include_parents=False)) == 12


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_runs_json_lists_params_metrics_tags_and_artifacts(store, tmp_path, capsys):
    plot = tmp_path / "recall_qps.png"
    plot.write_bytes(b"\x89PNG")
    run_id = log_run(store, "index-benchmarks", "flat", params={"k": 10}, metrics={"recall": 1.0}, artifacts=[plot])
    assert main(["runs", "--experiment", "index-benchmarks", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["run_id"] == run_id and run["params"] == {"k": "10"} and run["metrics"] == {"recall": 1.0}
    assert run["tags"]["workbench.version.faiss"] and "mlflow.source.git.commit" in run["tags"]
    (artifact,) = run["artifacts"]
    assert artifact["path"] == "recall_qps.png" and Path(artifact["local_path"]).read_bytes() == b"\x89PNG"
    assert main(["runs"]) == 0
    assert "flat" in capsys.readouterr().out


def test_cli_best_and_compare(store, sweep, capsys):
    assert main(["best", "--experiment", "index-benchmarks", "--metric", "qps", "--where", "recall>=0.9",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ok = sweep[sweep["recall"] >= 0.9]
    assert out["run"]["run_id"] == ok.loc[ok["qps"].idxmax(), "run_id"]
    assert out["value"] == pytest.approx(ok["qps"].max())
    assert main(["best", "--experiment", "index-benchmarks", "--metric", "qps", "--where", "recall>=2"]) == 2
    assert "none of them qualify" in capsys.readouterr().err
    assert main(["compare", *sweep["run_id"][:2]]) == 0
    assert "differs" in capsys.readouterr().out


def test_cli_tracking_bench_logs_every_run(store, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["tracking-bench", "--configs", "5", "--params", "3", "--metrics", "4", "--out", str(out)]) == 0
    result = json.loads((out / "tracking_bench.json").read_text())
    assert result["runs_in_store"] == 5 and result["runs_queued"] == 0 and result["seconds"] > 0
    assert "logged 5 runs x 3 params x 4 metrics" in capsys.readouterr().out
    # the benchmark's temporary store is gone; the configured store got nothing
    assert [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith("bench-")] == []
