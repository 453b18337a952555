"""Faults: a sync killed part-way, a store held locked by another process, a damaged results file on resume,
a sweep killed with its parent RUNNING, a store locked after a sweep's parent entered it. Real MLflow on temporary SQLite stores, real processes and signals;
no wall-clock assertions (the bounded wait is checked through what the command printed and queued)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tracking_support import subprocess_env, use_store

from workbench.bench.results import read_results, write_results
from workbench.errors import ResultsIntegrityError
from workbench.tracking.outbox import PAUSE_SETTING, pending
from workbench.tracking.query import runs_frame

# A sweep of CHILDREN child runs made while the store is unreachable: all of it waits in the outbox.
QUEUE_SWEEP = """
import sys, warnings
from workbench.tracking import Store, log_run, parent_run
warnings.simplefilter("ignore")
store = Store(sys.argv[1], Store.from_settings().outbox)
for s in range(2):
    with parent_run(store, "faults", f"sweep {s}", params={"s": s}):
        for i in range(int(sys.argv[2])):
            log_run(store, "faults", f"s{s}-r{i}", params={"i": i}, metrics={"m": s * 100 + i})
"""
CHILDREN = 4

# Holds the database with BEGIN EXCLUSIVE until killed; says "locked" once it holds it.
LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""

# A sweep whose process is killed while its parent run is open in the store.
OPEN_SWEEP = """
import sys, time
from workbench.tracking import Store, log_run, parent_run
store = Store.from_settings()
with parent_run(store, "faults", "killed sweep"):
    log_run(store, "faults", "first point", metrics={"m": 1})
    print("running", flush=True)
    time.sleep(600)
"""


# A sweep whose store is locked (by the test) after its parent run is created, before its points, outputs
# and end; prints its tracking warnings the way the CLI does.
LOCKED_MID_SWEEP = """
import sys, warnings
from workbench.errors import TrackingUnavailableWarning
from workbench.tracking import Store, attach_outputs, log_run, parent_run
store = Store.from_settings()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with parent_run(store, "faults", "locked sweep", params={"k": 1}):
        print("created", flush=True)
        sys.stdin.readline()  # the store is locked now
        for i in range(3):
            log_run(store, "faults", f"r{i}", metrics={"m": i})
        attach_outputs("report", [sys.argv[1]], metrics={"n_points": 3})
for w in caught:
    if issubclass(w.category, TrackingUnavailableWarning):
        print(f"warning: {w.message}", file=sys.stderr)
"""


def _workbench(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], env=subprocess_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(stream, text: str) -> str:
    seen = ""
    for line in stream:
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"never printed {text!r}; got {seen[-2000:]}")


def test_sync_killed_mid_way_then_resumed_logs_every_run_once_with_nesting(tmp_path, monkeypatch):
    store = use_store(monkeypatch, tmp_path)
    unreachable = f"sqlite:///{tmp_path / 'file'}/mlflow.db"
    (tmp_path / "file").write_text("not a folder")
    subprocess.run([sys.executable, "-c", QUEUE_SWEEP, unreachable, str(CHILDREN)], env=subprocess_env(),
                   check=True, capture_output=True)
    assert len(pending(store.outbox)) == 2 * (CHILDREN + 1)
    for pause_after in (1, 4):  # killed once after a parent, once among the children
        sync = _workbench("runs", "sync", **{PAUSE_SETTING: str(pause_after)})
        _wait_for(sync.stderr, "sync paused")
        sync.send_signal(signal.SIGKILL)
        sync.wait(timeout=60)
    sync = _workbench("runs", "sync")
    out, err = sync.communicate(timeout=300)
    assert sync.returncode == 0, out + err
    assert "Traceback" not in err and not pending(store.outbox)

    df = runs_frame(store, "faults")
    assert sorted(df["run_name"]) == sorted([f"sweep {s}" for s in range(2)]
                                            + [f"s{s}-r{i}" for s in range(2) for i in range(CHILDREN)])
    parents = df[df["run_name"].str.startswith("sweep")].set_index("run_name")["run_id"]
    for s in range(2):
        children = df[df["tags.mlflow.parentRunId"] == parents[f"sweep {s}"]]
        assert sorted(children["run_name"]) == [f"s{s}-r{i}" for i in range(CHILDREN)]
    assert set(df["status"]) == {"FINISHED"}


def test_sync_exits_non_zero_naming_a_child_whose_parent_is_gone(tmp_path, monkeypatch, capsys):
    store = use_store(monkeypatch, tmp_path)
    (tmp_path / "file").write_text("not a folder")
    subprocess.run([sys.executable, "-c", QUEUE_SWEEP, f"sqlite:///{tmp_path / 'file'}/mlflow.db", "1"],
                   env=subprocess_env(), check=True, capture_output=True)
    from workbench.cli import main
    from workbench.tracking.record import RunRecord

    parent = next(p for p in pending(store.outbox) if RunRecord.from_json(p).is_parent)
    parent.unlink()  # its children can never be linked now
    assert main(["runs", "sync"]) == 1
    out = capsys.readouterr().out
    assert "1 stuck" in out and "is not logged yet" in out


def test_locked_store_bounded_wait_runs_queued_one_warning_line(tmp_path, monkeypatch):
    store = use_store(monkeypatch, tmp_path)
    db = Path(store.uri[len("sqlite:///"):])
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "15"], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        run = subprocess.run([sys.executable, "-m", "workbench", "ann", "synthetic:n=300,dim=8,queries=10,seed=1",
                              "--index", "faiss:Flat", "--index", "faiss:HNSW8,Flat?efSearch=8,16", "--runs", "1",
                              "--out", str(tmp_path / "out")], env=subprocess_env(WORKBENCH_TRACKING_TIMEOUT="2"),
                             capture_output=True, text=True, timeout=600)
        still_locked = locker.poll() is None
    finally:
        locker.kill()
        locker.wait()
    assert still_locked, "the lock was released before the command finished: the wait was not bounded"
    assert run.returncode == 0, run.stderr[-3000:]
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "database is locked" in warnings[0], run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "sqlalchemy" not in run.stderr.lower()
    assert len(pending(store.outbox)) == 4  # the sweep and its three points
    from workbench.tracking.outbox import sync

    assert len(sync(store).logged) == 4 and len(runs_frame(store, "index-benchmarks")) == 4


def test_store_locked_after_the_parent_was_created_ends_it_finished_on_sync(tmp_path, monkeypatch):
    store = use_store(monkeypatch, tmp_path)
    report = tmp_path / "report.json"
    report.write_text("{}")
    sweep = subprocess.Popen([sys.executable, "-c", LOCKED_MID_SWEEP, str(report)],
                             env=subprocess_env(WORKBENCH_TRACKING_TIMEOUT="2"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    locker = None
    try:
        _wait_for(sweep.stdout, "created")
        db = Path(store.uri[len("sqlite:///"):])
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "60"], stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        _, err = sweep.communicate("go\n", timeout=300)
        still_locked = locker.poll() is None
    finally:
        sweep.kill()
        if locker is not None:
            locker.kill()
            locker.wait()
    assert still_locked, "the lock was released before the sweep finished: the wait was not bounded"
    assert sweep.returncode == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "database is locked" in warnings[0], err[-3000:]
    assert "Traceback" not in err and "sqlalchemy" not in err.lower()
    assert len(pending(store.outbox)) == 4  # three points and the parent's end (status, outputs)
    from workbench.cli import main
    from workbench.tracking.outbox import sync

    # The sweep's process is gone and its parent still RUNNING in the store: not a killed sweep, though.
    assert main(["runs", "--experiment", "faults"]) == 0
    assert runs_frame(store, "faults").set_index("run_name").loc["locked sweep", "status"] == "RUNNING"
    end_entry = next(p for p in pending(store.outbox) if '"kind": "end"' in p.read_text())
    saved = end_entry.read_text()
    assert len(sync(store).logged) == 4 and not pending(store.outbox)
    end_entry.write_text(saved)  # applied twice (a sync killed before it deleted the entry): harmless
    assert len(sync(store).logged) == 1 and not pending(store.outbox)
    assert main(["runs", "--experiment", "faults"]) == 0

    df = runs_frame(store, "faults").set_index("run_name")
    parent = df.loc["locked sweep"]
    assert parent["status"] == "FINISHED" and parent["metrics.n_points"] == 3
    assert sorted(df.index[df["tags.mlflow.parentRunId"] == parent["run_id"]]) == ["r0", "r1", "r2"]
    assert set(df["status"]) == {"FINISHED"}
    c = store.client()
    assert [a.path for a in c.list_artifacts(parent["run_id"], "report")] == ["report/report.json"]
    assert len(c.get_metric_history(parent["run_id"], "n_points")) == 1


def test_killed_sweep_parent_is_ended_as_killed(tmp_path, monkeypatch):
    store = use_store(monkeypatch, tmp_path)
    sweep = subprocess.Popen([sys.executable, "-c", OPEN_SWEEP], env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _wait_for(sweep.stdout, "running")
    assert set(runs_frame(store, "faults")["status"]) == {"RUNNING", "FINISHED"}
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(timeout=60)
    from workbench.cli import main

    assert main(["runs", "--experiment", "faults"]) == 0
    df = runs_frame(store, "faults").set_index("run_name")
    assert df.loc["killed sweep", "status"] == "KILLED" and df.loc["first point", "status"] == "FINISHED"


def _flip_one_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_results_file_checksum_is_verified_on_read(tmp_path):
    path = tmp_path / "results.parquet"
    write_results([{"dataset_digest": "d", "point": "p", "build_params": "{}", "k": 10, "threads": 1,
                    "recall": 0.5}], path)
    assert read_results(path)["recall"].tolist() == [0.5]
    assert path.with_name("results.parquet.sha256").is_file()
    _flip_one_bit(path)
    with pytest.raises(ResultsIntegrityError, match="results.parquet is damaged"):
        read_results(path)


def test_corrupt_results_file_stops_a_resumed_sweep(tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "out"
    argv = ["ann", "synthetic:n=300,dim=8,queries=10", "--index", "faiss:Flat", "--runs", "1", "--no-track",
            "--out", str(out)]
    assert main(argv) == 0
    before = (out / "results.parquet").read_bytes()
    _flip_one_bit(out / "results.parquet")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "results.parquet is damaged" in err and "Traceback" not in err
    assert (out / "results.parquet").read_bytes() != before  # left as found, for a look: not overwritten


def test_atomic_writes_keep_the_mode_a_plain_write_gives(tmp_path):
    import os

    from workbench.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
