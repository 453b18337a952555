"""The shared tracking server (`workbench tracking serve`, services/mlflow_server.py) with real processes: the
project's PostgreSQL in a temporary folder and `mlflow server` on a free loopback port, started once for the
module (~12 s quiet, more under load). Runs go over HTTP and are checked with a fresh MlflowClient and by
counting rows of the backend database with psycopg. The last test kills the server mid-sweep and ends with
it stopped, so it stays last in the file (pytest runs a file in order; `--dist loadfile` keeps it whole).
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import psycopg
import pytest
from conftest import topic_collection
from pg_support import env, server_folder
from psycopg.conninfo import make_conninfo
from tracking_support import closed_port, subprocess_env

from workbench.cli import main
from workbench.errors import TrackingError, TrackingUnavailableWarning
from workbench.runners.ann import run_ann
from workbench.runners.ann import tracking_sink as ann_sink
from workbench.runners.hybrid import run_hybrid
from workbench.runners.hybrid import tracking_sink as hybrid_sink
from workbench.services import postgres
from workbench.services.mlflow_server import TrackingServer, sqlalchemy_uri
from workbench.tracking.store import Store, lock_message, unreachable_reason, with_retry

ANN_DATA = "synthetic:n=1500,dim=16,queries=30,clusters=10,seed=3"
ANN_SPECS = ["faiss:Flat", "hnswlib:M=8,ef_construction=40?ef=10,20,40,80"]
TOPICS = ["wing flutter", "boundary layer", "heat transfer", "shock wave"]


@pytest.fixture(scope="module", name="server")
def server_fixture() -> Iterator[TrackingServer]:
    with server_folder() as root, env(WORKBENCH_CACHE=str(root), WORKBENCH_PG_URI=None):
        server = TrackingServer(root / "artifacts", port=closed_port())
        try:
            yield server.start()
        finally:
            server.stop()
            postgres.stop_server()


def fresh_client(server: TrackingServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.uri)


def backend_count(server: TrackingServer, query: str, *params: Any) -> int:
    """One number from the server's backend database, read directly (not through mlflow)."""
    assert server.postgres is not None
    with psycopg.connect(make_conninfo(server.postgres.uri, dbname=server.database)) as conn:
        return conn.execute(query, params).fetchone()[0]


def sweep_run_count(server: TrackingServer, parent_id: str) -> int:
    """Active runs of a sweep in the backend: the parent and its children."""
    return backend_count(server, "SELECT count(*) FROM runs WHERE lifecycle_stage = 'active' AND (run_uuid = %s OR "
                         "run_uuid IN (SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s))",
                         parent_id, parent_id)


def children(c: Any, parent_id: str) -> list[Any]:
    exp = c.get_run(parent_id).info.experiment_id
    return c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000)


def check_ann_sweep(server: TrackingServer, parent_id: str, frame: Any, out: Path) -> None:
    """Every point once with its params and metrics, the outputs on the parent, all as the backend has it."""
    c = fresh_client(server)
    runs = {r.info.run_name: r for r in children(c, parent_id)}
    assert sorted(runs) == sorted(frame["point"]) and len(frame) == 5
    for row in frame.to_dict("records"):
        run = runs[row["point"]]
        assert run.info.status == "FINISHED" and run.data.params["index"] == row["index"]
        assert run.data.metrics["recall"] == pytest.approx(row["recall"])
        assert run.data.metrics["qps"] == pytest.approx(row["qps"])
    parent = c.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_points"] == len(frame)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")     # uploaded through the server
    listed = {a.path for a in c.list_artifacts(parent_id, "report")}
    assert listed >= {"report/results.parquet", "report/summary.json", "report/recall_qps.png"}
    fetched = Path(c.download_artifacts(parent_id, "report/summary.json", str(out / "fetched")))
    assert fetched.read_bytes() == (out / "summary.json").read_bytes()
    assert list(server.artifacts.rglob("summary.json"))                  # in the server's artifact folder
    assert sweep_run_count(server, parent_id) == 1 + len(frame)


def test_backend_uri_forms() -> None:
    assert sqlalchemy_uri("postgresql://postgres:@/postgres?host=/tmp/pg") == \
        "postgresql+psycopg://postgres@/postgres?host=%2Ftmp%2Fpg"
    assert sqlalchemy_uri("host=db.example port=5433 user=bob password=p@ss dbname=team sslmode=require") == \
        "postgresql+psycopg://bob:p%40ss@db.example:5433/team?sslmode=require"
    assert sqlalchemy_uri("postgresql+psycopg://bob@db.example/team") == "postgresql+psycopg://bob@db.example/team"
    with pytest.raises(TrackingError, match="is not a PostgreSQL URI"):
        sqlalchemy_uri("mysql://bob@db.example/team")


def test_serve_refuses_a_busy_port_a_bad_backend_and_an_unwritable_artifact_folder(tmp_path, capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["tracking", "serve", "--port", str(port), "--artifacts", str(tmp_path / "a")]) == 2
        assert f"error: port {port} on 127.0.0.1 is in use (PID " in capsys.readouterr().err
    free = str(closed_port())
    assert main(["tracking", "serve", "--port", free, "--backend-uri", "mysql://bob@db/team",
                 "--artifacts", str(tmp_path / "a")]) == 2
    assert "error: backend URI mysql://bob@db/team is not a PostgreSQL URI" in capsys.readouterr().err
    dead = f"postgresql://bob:secret@127.0.0.1:{closed_port()}/team"
    assert main(["tracking", "serve", "--port", free, "--backend-uri", dead, "--artifacts", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "error: cannot connect to the backend database" in err and "Connection refused" in err
    assert "secret" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    assert main(["tracking", "serve", "--port", free, "--artifacts", str(tmp_path / "file" / "art")]) == 2
    assert f"error: artifact folder {tmp_path / 'file' / 'art'} is not writable (Not a directory)" in \
        capsys.readouterr().err


def test_a_dead_or_hung_server_fails_fast_and_is_then_skipped() -> None:
    """mlflow alone would retry for ~4 minutes; the store's bounded retries fail in seconds, and later
    calls of this process go to the outbox without asking the server again; a hung server fails the probe."""
    uri = f"http://127.0.0.1:{closed_port()}"
    c = Store(uri, Path("/nonexistent")).client()
    with pytest.raises(Exception) as failure:
        with_retry(c.search_experiments)
    assert lock_message(failure.value) == f"tracking server {uri} did not answer (connection refused)"
    assert unreachable_reason(uri) == lock_message(failure.value)
    with socket.socket() as hung:      # accepts connections (the kernel's backlog) but never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        port = hung.getsockname()[1]
        assert unreachable_reason(f"http://127.0.0.1:{port}", timeout=0.5) == \
            f"cannot connect to 127.0.0.1:{port}: timed out"


def test_ann_sweep_and_hybrid_evaluation_are_logged_over_http(server, tmp_path, monkeypatch) -> None:
    store = Store(server.uri, tmp_path / "outbox")
    sink = ann_sink(store)
    result = run_ann(ANN_DATA, tmp_path / "ann", specs=ANN_SPECS, k=5, runs=1, budget_s=0.5, sink=sink,
                     progress=False)
    assert sink.parent_run_id is not None
    check_ann_sweep(server, sink.parent_run_id, result.frame, tmp_path / "ann")

    monkeypatch.setattr("workbench.embed.embed_dataset", fake_embed_dataset)
    sink = hybrid_sink(store)
    hybrid = run_hybrid(collection(tmp_path / "mini"), tmp_path / "hybrid", folds=2, sink=sink)
    c = fresh_client(server)
    runs = {r.info.run_name: r for r in children(c, sink.parent_run_id)}
    assert set(runs) == {f"mini:{m}" for m in hybrid.metrics}
    for method, metrics in hybrid.metrics.items():
        run = runs[f"mini:{method}"]
        assert run.data.metrics["ndcg_at_10"] == pytest.approx(metrics["ndcg@10"])
        assert [a.path for a in c.list_artifacts(run.info.run_id)] == [f"{method}.trec"]
    assert {a.path for a in c.list_artifacts(sink.parent_run_id, "results")} >= {"results/metrics.json"}
    assert sweep_run_count(server, sink.parent_run_id) == 1 + len(hybrid.metrics)
    assert not list(store.outbox.glob("*.json"))


def test_four_concurrent_writers_lose_no_run_and_no_metric(server, tmp_path) -> None:
    configs, n = 10, 4
    settings = subprocess_env(MLFLOW_TRACKING_URI=server.uri, WORKBENCH_OUTBOX=str(tmp_path / "outbox"))
    writers = [subprocess.Popen([sys.executable, "-m", "workbench", "tracking-bench", "--uri", server.uri,
                                 "--configs", str(configs), "--params", str(n), "--metrics", str(n), "--json",
                                 "--out", str(tmp_path / f"w{i}")], env=settings, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(4)]
    outputs = [w.communicate(timeout=600) for w in writers]
    assert [w.returncode for w in writers] == [0] * 4, [err for _, err in outputs]
    assert all(json.loads(out)["runs_queued"] == 0 for out, _ in outputs)
    c = fresh_client(server)
    exp = c.get_experiment_by_name("tracking-bench").experiment_id
    parents = {r.data.tags["workbench.pid"]: r for r in c.search_runs(
        [exp], f"attributes.run_name = 'bench {configs}x{n}x{n}'", max_results=100)}
    for writer in writers:
        parent = parents[str(writer.pid)]
        assert parent.info.status == "FINISHED"
        runs = children(c, parent.info.run_id)
        assert sorted(r.info.run_name for r in runs) == sorted(f"config-{i}" for i in range(configs))
        for run in runs:
            i = int(run.info.run_name.split("-")[1])
            assert run.data.metrics == {f"metric_{j}": (i + 1) / (j + 1) for j in range(n)}
            assert run.data.params == {f"param_{j}": str(i * j) for j in range(n)}
        assert sweep_run_count(server, parent.info.run_id) == 1 + configs
        assert backend_count(server, "SELECT count(*) FROM latest_metrics WHERE run_uuid IN (SELECT run_uuid FROM "
                             "tags WHERE key = 'mlflow.parentRunId' AND value = %s)", parent.info.run_id) == configs * n
    assert not list((tmp_path / "outbox").glob("*.json"))


class KillServerMidSweep:
    """A sink that forwards to ``sink``; after ``after`` points a watcher thread checks that they reached
    the backend, SIGKILLs the server, and only then is the next point reported."""

    def __init__(self, sink: Any, server: TrackingServer, after: int) -> None:
        self.sink, self.server, self.after, self.points = sink, server, after, 0
        self.first_points, self.killed = threading.Event(), threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        if self.first_points.wait(timeout=600):
            parent = self.sink.parent_run_id
            stored = backend_count(self.server, "SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId' "
                                   "AND value = %s", parent)
            if stored == self.after:
                self.server.kill()
        self.killed.set()

    def sweep(self, name: str, params: Mapping[str, Any], dataset: Any) -> Any:
        return self.sink.sweep(name, params, dataset)

    def point(self, row: Mapping[str, Any]) -> None:
        if self.points == self.after:
            self.first_points.set()
            assert self.killed.wait(timeout=600)
        self.sink.point(row)
        self.points += 1

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None:
        self.sink.attach(name, artifacts, metrics)


def test_server_killed_mid_sweep_runs_wait_in_the_outbox_then_sync_logs_each_once(server, tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    store = Store(server.uri, tmp_path / "outbox")
    sink = KillServerMidSweep(ann_sink(store), server, after=2)
    with pytest.warns(TrackingUnavailableWarning, match="did not answer"):
        result = run_ann(ANN_DATA, tmp_path / "ann", specs=ANN_SPECS, k=5, runs=1, budget_s=0.5, sink=sink,
                         progress=False)
    assert not server.alive() and sink.points == len(result.frame) == 5
    parent_id = sink.sink.parent_run_id
    queued = [json.loads(p.read_text()) for p in sorted(store.outbox.glob("*.json"))]
    assert sorted(r["kind"] for r in queued) == ["end"] + ["run"] * 3
    assert all(r["parent_run_id"] == parent_id for r in queued if r["kind"] == "run")

    # the server comes back on the same backend and port, through the CLI this time
    cmd = [sys.executable, "-m", "workbench", "tracking", "serve", "--port", str(server.port),
           "--artifacts", str(server.artifacts)]
    serve = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith("export "):
            line = serve.stdout.readline()
            assert line, f"tracking serve ended: {serve.stderr.read()}"
            lines.append(line.strip())
        assert lines[-1] == f"export MLFLOW_TRACKING_URI={server.uri}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.setenv("WORKBENCH_OUTBOX", str(store.outbox))
        capsys.readouterr()
        assert main(["runs", "sync", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert len(report["logged"]) == 4 and not report["failed"] and not report["stuck"]
        assert unreachable_reason(server.uri) is None       # sync looked again: this process uses it again
        check_ann_sweep(server, parent_id, result.frame, tmp_path / "ann")
        assert not list(store.outbox.glob("*.json"))
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=120)
    assert serve.returncode == 0 and f"stopped the tracking server on {server.uri}" in out


def collection(root: Path) -> Path:
    return topic_collection(root, TOPICS, n_docs=40, filler_words=5, judged=5)


def fake_embed_dataset(ds: Any, embedder: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Bag-of-words hashed into 64 dims and normalised: deterministic, no model load."""
    def enc(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w[:4].encode()).hexdigest(), 16) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return enc(ds.doc_texts()), enc(ds.query_texts())
