"""Four processes logging to one SQLite store at the same time lose no run (SQLite locks the whole
database for each write; ``log_run`` retries while it is locked and only then falls back to the outbox)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from tracking_support import fresh_store, subprocess_env

from workbench.tracking.outbox import pending
from workbench.tracking.store import Store

WORKER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():  # start together
    time.sleep(0.01)
from workbench.tracking import Store, log_run, parent_run
worker, runs = int(sys.argv[1]), int(sys.argv[3])
store = Store.from_settings()
with parent_run(store, "index-benchmarks", f"worker {worker}") as parent:
    ids = [log_run(store, "index-benchmarks", f"w{worker}-r{i}", params={"worker": worker, "i": i},
                   metrics={f"m{j}": worker + i / 100 + j for j in range(10)}) for i in range(runs)]
print(parent, sum(i is None for i in ids))
"""


@pytest.mark.parametrize("new_store", [False, True], ids=["existing-store", "new-store"])
def test_four_processes_logging_at_once_lose_no_run(tmp_path, monkeypatch, new_store):
    if new_store:  # the four also race to create the schema
        uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    else:
        uri = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("WORKBENCH_OUTBOX", str(tmp_path / "outbox"))
    go, workers, runs = tmp_path / "go", 4, 10
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(w), str(go), str(runs)], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(workers)]
    time.sleep(1.0)  # let every worker import and wait at the barrier
    go.touch()
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
        parent, queued = out.split()
        assert parent != "None" and queued == "0", err[-2000:]
    assert not pending(tmp_path / "outbox")

    from workbench.tracking.query import runs_frame

    df = runs_frame(Store(uri, tmp_path / "outbox"), "index-benchmarks")
    children = df[df["tags.mlflow.parentRunId"].notna()]
    assert len(df) == workers * (runs + 1)
    assert sorted(children["run_name"]) == sorted(f"w{w}-r{i}" for w in range(workers) for i in range(runs))
    assert (children.groupby("tags.mlflow.parentRunId").size() == runs).all()
    assert set(df["status"]) == {"FINISHED"}
    assert children[[f"metrics.m{j}" for j in range(10)]].notna().all().all()
