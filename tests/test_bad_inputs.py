"""Bad input, as a new user would type it, across every command: one table of command lines, the exit code
each must give and a phrase its message must contain. A bad input is a clear one-line error (exit 2), never
a traceback and never a silently wrong answer. Rows run in-process through ``workbench.cli.main``; API rows
call the function. See issue 11 for where the cases come from.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import write_beir
from tracking_support import use_store

from workbench.cli import main
from workbench.errors import WorkbenchError

S = "synthetic:n=200,dim=8,queries=5"
ANN = ["ann", S, "--no-track", "--runs", "1"]

# (id, argv with {tmp} for the test's folder, exit code, phrase the output must contain)
CASES = [
    # numbers: refused at parse time, not measured ("QPS on 0 threads") or silently reinterpreted
    ("ann-threads-0", [*ANN, "--threads", "0", "--out", "{tmp}/o"], 2, "argument --threads: must be a positive"),
    ("ann-runs-0", [*ANN, "--runs", "0", "--out", "{tmp}/o"], 2, "argument --runs: must be a positive"),
    ("ann-budget-neg", [*ANN, "--budget", "-1", "--out", "{tmp}/o"], 2, "argument --budget: must be a positive"),
    ("ann-budget-nan", [*ANN, "--budget", "nan", "--out", "{tmp}/o"], 2, "expected a finite number"),
    ("ann-k-text", [*ANN, "--k", "ten", "--out", "{tmp}/o"], 2, "argument --k: expected an integer"),
    ("overhead-threads-neg", ["ann-overhead", S, "--threads", "-2", "--out", "{tmp}/o"], 2, "--threads"),
    ("embed-limit-neg", ["embed", "cranfield", "--limit", "-5"], 2, "argument --limit: must be a positive"),
    ("embed-batch-0", ["embed", "cranfield", "--batch-size", "0"], 2, "argument --batch-size"),
    ("quantize-k-0", ["quantize", "cranfield", "--k", "0"], 2, "argument --k"),
    ("hybrid-depth-0", ["hybrid", "cranfield", "--depth", "0", "--out", "{tmp}/o"], 2, "argument --depth"),
    ("hybrid-folds-0", ["hybrid", "cranfield", "--folds", "0", "--out", "{tmp}/o"], 2, "argument --folds"),
    ("hybrid-bench-repeats-0", ["hybrid-bench", "--repeats", "0"], 2, "argument --repeats"),
    ("filtered-selectivity-2", ["filtered", S, "--selectivity", "2", "--out", "{tmp}/o"], 2, "fractions in (0, 1]"),
    ("filtered-overfetch-0", ["filtered", S, "--overfetch", "0,2", "--out", "{tmp}/o"], 2, "positive integers"),
    ("filtered-queries-0", ["filtered", S, "--queries", "0", "--out", "{tmp}/o"], 2, "argument --queries"),
    ("filtered-seed-neg", ["filtered", S, "--seed", "-1", "--out", "{tmp}/o"], 2, "argument --seed: must be 0"),
    ("features-entities-0", ["features", "bench", "--entities", "0", "--no-track"], 2, "argument --entities"),
    ("features-updates-text", ["features", "sweep", "--updates", "10,x", "--no-track"], 2, "expected an integer"),
    ("features-threads-0", ["features", "bench", "--threads", "0", "--no-track"], 2, "argument --threads"),
    ("features-memory-1XB", ["features", "ooc", "--memory-limit", "1XB", "--no-track"], 2,
     "expected a memory size such as 1GB"),
    ("runs-limit-0", ["runs", "--limit", "0"], 2, "argument --limit"),
    ("register-k-0", ["register", "abc", "--name", "m", "--k", "0"], 2, "argument --k"),
    ("tracking-bench-configs-0", ["tracking-bench", "--configs", "0"], 2, "argument --configs"),
    ("pg-overhead-runs-0", ["pg", "overhead", S, "--index", "pgvector:exact", "--runs", "0"], 2, "argument --runs"),
    # output folders: checked before any work
    ("out-under-file", [*ANN, "--out", "{tmp}/file/out"], 2, "which is a regular file, not a folder"),
    ("out-is-file", [*ANN, "--out", "{tmp}/file"], 2, "is a regular file, not a folder"),
    ("out-proc", [*ANN, "--out", "/proc/workbench-out"], 2, "is in /proc, a kernel filesystem"),
    ("out-sys", [*ANN, "--out", "/sys/workbench-out"], 2, "is in /sys, a kernel filesystem"),
    ("hybrid-out-proc", ["hybrid", "cranfield", "--out", "/proc/x"], 2, "is in /proc"),
    ("filtered-out-under-file", ["filtered", S, "--out", "{tmp}/file/o"], 2, "regular file"),
    ("features-out-under-file", ["features", "bench", "--out", "{tmp}/file/o", "--no-track"], 2, "regular file"),
    ("quantize-out-sys", ["quantize", "cranfield", "--out", "/sys/q"], 2, "is in /sys"),
    ("embed-bench-out-file", ["embed-bench", "cranfield", "--out", "{tmp}/file"], 2, "regular file"),
    ("tracking-bench-out-file", ["tracking-bench", "--out", "{tmp}/file/x"], 2, "regular file"),
    ("fetch-out-proc", ["data", "fetch", "cranfield", "--out", "/proc/c"], 2, "is in /proc"),
    ("run-out-under-file", ["run", "--out", "{tmp}/file/o"], 2, "regular file"),
    ("report-empty-store", ["report", "--out", "{tmp}/r"], 2, "no `workbench run` recorded"),
    ("report-out-file", ["report", "--out", "{tmp}/file"], 2, "file"),
    # SPEC and DATA parameters: typed, never truncated
    ("spec-nprobe-float", [*ANN, "--index", "faiss:IVF4,Flat?nprobe=2.7", "--out", "{tmp}/o"], 2,
     "nprobe: '2.7' is not an integer"),
    ("spec-efsearch-nan", [*ANN, "--index", "faiss:HNSW8,Flat?efSearch=nan", "--out", "{tmp}/o"], 2,
     "efSearch: 'nan' is not an integer"),
    ("spec-hnswlib-M-text", [*ANN, "--index", "hnswlib:M=abc", "--out", "{tmp}/o"], 2, "M must be a positive"),
    ("spec-unknown-param", [*ANN, "--index", "hnswlib:M=8?nprobe=2", "--out", "{tmp}/o"], 2,
     "unknown hnswlib query parameter(s) nprobe"),
    ("spec-bad-factory", [*ANN, "--index", "faiss:IVF8,Nonsense", "--out", "{tmp}/o"], 2,
     "faiss cannot build factory string"),
    ("spec-ivf-more-lists-than-vectors", [*ANN, "--index", "faiss:IVF256,Flat", "--out", "{tmp}/o"], 2,
     "256 IVF lists but only 200 vectors"),
    ("spec-pq-too-few-vectors", [*ANN, "--index", "faiss:IVF4,PQ4", "--out", "{tmp}/o"], 2,
     "200 training vectors for 256 clusters"),
    ("data-synthetic-n-text", ["ann", "synthetic:n=abc", "--no-track", "--out", "{tmp}/o"], 2,
     "n must be an integer, got 'abc'"),
    ("data-missing-file", ["ann", "{tmp}/missing.npz", "--no-track", "--out", "{tmp}/o"], 2, "file not found"),
    ("data-missing-collection", ["embed", "{tmp}/missing"], 2, "error:"),
    ("data-non-utf8-corpus", ["embed", "{tmp}/latin1"], 2, "corpus.jsonl:2: byte offset 54 (column 27): 0xe9 is not UTF-8"),
    ("hybrid-missing-collection", ["hybrid", "{tmp}/nope", "--out", "{tmp}/o"], 2, "error:"),
    # --where: strict, refused with the position
    ("where-double-op", ["best", "--experiment", "e", "--metric", "qps", "--where", "recall<<0.5"], 2,
     "at position 8 expected a number"),
    ("where-or", ["best", "--experiment", "e", "--metric", "qps", "--where", "recall>0.5 or qps>1"], 2,
     "at position 12 expected 'and' or the end"),
    ("where-text-value", ["best", "--experiment", "e", "--metric", "qps", "--where", "recall>high"], 2,
     "at position 8 expected a number"),
    ("where-no-op", ["best", "--experiment", "e", "--metric", "qps", "--where", "recall ~ 0.9"], 2,
     "at position 8 expected an operator"),
    ("best-unknown-experiment", ["best", "--experiment", "nope", "--metric", "qps"], 2, "no experiment 'nope'"),
    ("compare-unknown-run", ["compare", "missing"], 2, "no run 'missing'"),
    ("register-unknown-run", ["register", "missing", "--name", "m"], 2, "missing"),
]

# (id, settings, argv, exit code, phrase): bad settings in the environment
SETTINGS = [
    ("cache-is-a-file", {"WORKBENCH_CACHE": "{tmp}/file"}, ["embed", "{tmp}/tiny"], 2,
     "cache folder (WORKBENCH_CACHE) {tmp}/file is a regular file"),
    ("cache-under-a-file", {"WORKBENCH_CACHE": "{tmp}/file/cache"}, ["embed", "{tmp}/tiny"], 2, "regular file"),
    ("tracking-timeout-text", {"WORKBENCH_TRACKING_TIMEOUT": "soon"}, ["runs"], 2,
     "WORKBENCH_TRACKING_TIMEOUT must be a positive number of seconds, got 'soon'"),
    ("tracking-timeout-0", {"WORKBENCH_TRACKING_TIMEOUT": "0"}, ["runs"], 2, "WORKBENCH_TRACKING_TIMEOUT"),
    ("home-is-a-file", {"WORKBENCH_HOME": "{tmp}/file"}, ["ann-overhead", S, "--runs", "1"], 2,
     "WORKBENCH_HOME={tmp}/file is a regular file"),
]


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch) -> Path:
    """A folder with a regular file, an empty folder, a tiny collection and one with Latin-1 bytes; a
    fresh tracking store."""
    use_store(monkeypatch, tmp_path / "tracking")
    (tmp_path / "file").write_text("a regular file")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes").mkdir()  # a folder without results.json is no result
    write_beir(tmp_path / "tiny", [{"_id": "d1", "text": "wing flutter"}], [{"_id": "q1", "text": "flutter"}],
               [("q1", "d1", 1)])
    latin = write_beir(tmp_path / "latin1", [{"_id": "d1", "text": "ok"}], [{"_id": "q1", "text": "q"}],
                       [("q1", "d1", 1)])
    with open(latin / "corpus.jsonl", "ab") as f:
        f.write(b'{"_id": "d2", "text": "caf\xe9"}\n')  # 0xe9: Latin-1, not UTF-8
    return tmp_path


def _run(argv: list[str], tmp: Path, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([a.replace("{tmp}", str(tmp)) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _check(code: int, out: str, err: str, expected_code: int, phrase: str) -> None:
    assert code == expected_code, (out + err)[-3000:]
    assert phrase in out + err, (out + err)[-3000:]
    assert "Traceback" not in err and "Traceback" not in out
    if expected_code == 2:  # one clear line names the problem
        assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


@pytest.mark.parametrize("argv, code, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line(argv, code, phrase, tmp, capsys):
    _check(*_run(argv, tmp, capsys), code, phrase)


@pytest.mark.parametrize("settings, argv, code, phrase", [c[1:] for c in SETTINGS], ids=[c[0] for c in SETTINGS])
def test_bad_setting(settings, argv, code, phrase, tmp, capsys, monkeypatch):
    for key, value in settings.items():
        monkeypatch.setenv(key, value.replace("{tmp}", str(tmp)))
    _check(*_run(argv, tmp, capsys), code, phrase.replace("{tmp}", str(tmp)))


def _feature_view(ttl):
    from workbench.features.view import FeatureView

    return FeatureView(name="v", entities=["e"], features=["f"], ttl=ttl)


def _offline_store(limit):
    from workbench.features.offline import OfflineStore

    return OfflineStore(memory_limit=limit)


def _load_latin1(tmp):
    from workbench.data import load_dataset

    return load_dataset(str(tmp / "latin1"))


# (id, call, phrase): the API raises a WorkbenchError whose message names the problem
API = [
    ("feature-view-ttl-0", lambda tmp: _feature_view(0), "ttl must be a datetime.timedelta"),
    ("feature-view-ttl-3600", lambda tmp: _feature_view(3600), "got int 3600"),
    ("feature-view-ttl-negative", lambda tmp: _feature_view(timedelta(seconds=-1)), "is negative"),
    ("offline-store-memory-1XB", lambda tmp: _offline_store("1XB"), "memory_limit '1XB' is not a memory size"),
    ("beir-non-utf8", _load_latin1, "0xe9 is not UTF-8"),
]


@pytest.mark.parametrize("call, phrase", [c[1:] for c in API], ids=[c[0] for c in API])
def test_bad_api_call(call, phrase, tmp):
    with pytest.raises(WorkbenchError) as caught:
        call(tmp)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


# Correct results where a wrong answer used to come back (issue 11, class 3).
def test_best_where_compares_numbers_never_text(tmp, capsys):
    from workbench.tracking import Store, log_run

    store = Store.from_settings()
    for name, recall, qps in (("low", 0.5, 900.0), ("high", 0.84, 100.0)):
        log_run(store, "e", name, params={"k": 10}, metrics={"recall": recall, "qps": qps})
    code, out, _ = _run(["best", "--experiment", "e", "--metric", "qps", "--where", "recall<0.6 and k=10",
                         "--json"], tmp, capsys)
    assert code == 0 and json.loads(out)["run"]["run_name"] == "low"
    code, out, _ = _run(["best", "--experiment", "e", "--metric", "qps", "--where", "recall>=0.8", "--json"],
                        tmp, capsys)
    assert code == 0 and json.loads(out)["run"]["run_name"] == "high"


def test_commands_say_where_their_files_went(tmp, capsys):
    code, out, _ = _run([*ANN, "--index", "faiss:Flat", "--out", "{tmp}/o"], tmp, capsys)
    assert code == 0 and f"wrote {tmp}/o/results.parquet" in out
    code, out, _ = _run(["ann", S, "--runs", "1", "--index", "faiss:Flat", "--out", "{tmp}/o2"], tmp, capsys)
    assert code == 0 and "runs tracked in sqlite:///" in out


def test_workspace_is_the_nearest_project_folder(tmp, monkeypatch):
    from workbench.config import output_dir, workspace
    from workbench.tracking.store import Store

    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.delenv("WORKBENCH_OUT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp / "proj"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "workbench"\n')
    monkeypatch.chdir(project / "notebooks")
    assert workspace() == project and output_dir() == project / "out"
    assert Store.from_settings().uri == f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    (tmp / "elsewhere" / "deep").mkdir(parents=True)
    (tmp / "elsewhere" / ".workbench").touch()
    monkeypatch.chdir(tmp / "elsewhere" / "deep")
    assert workspace() == tmp / "elsewhere"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp / "home"))
    assert workspace() == tmp / "home"
