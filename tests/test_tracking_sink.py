"""The one tracking seam: TrackingSink on a real store (parent, children, outputs on the parent, the outbox),
and every runner reporting through the sink protocol in order (sweep, then points and outputs inside it)."""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytest
from conftest import write_beir
from tracking_support import closed_port, use_store

from workbench.errors import TrackingError, TrackingUnavailableWarning
from workbench.tracking.outbox import pending, sync
from workbench.tracking.query import runs_frame
from workbench.tracking.sink import ChildRun, CollectingSink, TrackingSink
from workbench.tracking.store import Store, client
from workbench.vectors.formats import save_npz, synthetic_clusters

DATASET = {"name": "toy", "digest": "ef" * 32, "source": "test"}


def toy_run(row: Mapping[str, Any]) -> ChildRun:
    return ChildRun(f"ef={row['ef']}", params={"ef": row["ef"]}, metrics={"recall": row["recall"]},
                    tags={"family": "toy"})


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return use_store(monkeypatch, tmp_path)


def test_tracking_sink_logs_parent_children_and_outputs_on_the_parent(store, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    sink = TrackingSink(store, "index-benchmarks", "workbench test", toy_run)
    with sink.sweep("toy sweep", {"k": 10}, DATASET):
        for ef in (16, 32):
            sink.point({"ef": ef, "recall": ef / 32})
        sink.attach("report", [summary], metrics={"n_points": 2})
    runs = runs_frame(store, "index-benchmarks")
    parent = runs[runs["run_id"] == sink.parent_run_id].iloc[0]
    assert parent["run_name"] == "toy sweep" and parent["params.k"] == "10" and parent["metrics.n_points"] == 2
    assert parent["tags.workbench.dataset.digest"] == DATASET["digest"] and parent["status"] == "FINISHED"
    kids = runs[runs["tags.mlflow.parentRunId"] == sink.parent_run_id].sort_values("run_name")
    assert kids["run_name"].tolist() == ["ef=16", "ef=32"] and kids["metrics.recall"].tolist() == [0.5, 1.0]
    assert set(kids["tags.family"]) == {"toy"} and set(kids["tags.workbench.command"]) == {"workbench test"}
    assert [a.path for a in client(store.uri).list_artifacts(sink.parent_run_id, "report")] == ["report/summary.json"]


def test_points_and_outputs_belong_to_a_sweep(store, tmp_path):
    sink = TrackingSink(store, "hybrid", "workbench test", toy_run)
    with pytest.raises(TrackingError, match="a point reported outside a sweep of 'hybrid'"):
        sink.point({"ef": 1, "recall": 1.0})
    with pytest.raises(TrackingError, match="outputs 'report' reported outside a sweep"):
        sink.attach("report", [])
    with sink.sweep("s", {}, None), pytest.raises(TrackingError, match="missing.json"):
        sink.attach("report", [tmp_path / "missing.json"])


def test_outputs_of_an_outboxed_sweep_reach_the_parent_after_sync(store, tmp_path):
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG")
    dead = Store(f"http://127.0.0.1:{closed_port()}", store.outbox)
    sink = TrackingSink(dead, "index-benchmarks", "workbench test", toy_run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with sink.sweep("queued sweep", {"k": 5}, DATASET):
            sink.point({"ef": 8, "recall": 0.25})
            sink.attach("report", [plot], metrics={"n_points": 1})
    assert sink.parent_run_id is None and len(pending(store.outbox)) == 2
    assert sum(issubclass(w.category, TrackingUnavailableWarning) for w in caught) == 1
    report = sync(store)
    assert len(report.logged) == 2 and not report.failed
    runs = runs_frame(store, "index-benchmarks")
    parent = runs[runs["run_name"] == "queued sweep"].iloc[0]
    assert parent["metrics.n_points"] == 1
    assert runs[runs["run_name"] == "ef=8"].iloc[0]["tags.mlflow.parentRunId"] == parent["run_id"]
    assert [a.path for a in client(store.uri).list_artifacts(parent["run_id"], "report")] == ["report/plot.png"]


# -- every runner reports through the protocol ------------------------------------------------------------
class OrderedSink(CollectingSink):
    """A CollectingSink that also records the order of calls, to check nesting."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    @contextlib.contextmanager
    def sweep(self, name: str, params: Mapping[str, Any], dataset: Mapping[str, str] | None) -> Iterator[None]:
        self.events.append("sweep")
        with super().sweep(name, params, dataset):
            yield
        self.events.append("end")

    def point(self, row: Mapping[str, Any]) -> None:
        self.events.append("point")
        super().point(row)

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None:
        self.events.append("attach")
        super().attach(name, artifacts, metrics)


def assert_protocol(sink: OrderedSink, n_points: int, n_attach: int = 1) -> None:
    """One sweep around ``n_points`` points and then ``n_attach`` sets of outputs, whose files exist."""
    assert sink.events == ["sweep"] + ["point"] * n_points + ["attach"] * n_attach + ["end"]
    assert len(sink.sweeps) == 1 and len(sink.attached) == n_attach
    assert all(Path(a).exists() for att in sink.attached for a in att["artifacts"])


def test_run_ann_reports_sweep_points_and_outputs(tmp_path):
    from workbench.runners.ann import point_run, run_ann

    vs = synthetic_clusters(n=600, dim=8, n_queries=20, n_clusters=6, seed=1, metric="l2")
    sink = OrderedSink()
    result = run_ann(str(save_npz(vs, tmp_path / "v.npz")), tmp_path / "out",
                     specs=["faiss:Flat", "faiss:IVF4,Flat?nprobe=1,4"], k=5, runs=1, sink=sink, progress=False)
    assert_protocol(sink, 3)
    assert [p["point"] for p in sink.points] == result.frame["point"].tolist()
    assert sink.sweeps[0]["dataset"]["digest"] == result.data.digest
    assert {Path(a).name for a in sink.attached[0]["artifacts"]} == {
        "results.parquet", "summary.json", "recall_qps.png", "recall_batch_qps.png", "build_size.png"}
    run = point_run(sink.points[0])
    assert run.name == "faiss:Flat" and run.metrics["recall"] == 1.0 and run.params["k"] == 5


def test_run_hybrid_reports_each_method(tmp_path, monkeypatch):
    from workbench.runners.hybrid import method_run, run_hybrid

    def fake_embed(ds, embedder=None):  # hashed bag of words: no model load
        def enc(texts):
            out = np.zeros((len(texts), 32), dtype=np.float32)
            for i, t in enumerate(texts):
                for w in t.split():
                    out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 32] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return enc(ds.doc_texts()), enc(ds.query_texts())

    monkeypatch.setattr("workbench.embed.embed_dataset", fake_embed)
    topics = ["wing flutter", "boundary layer", "heat transfer", "shock wave"]
    corpus = [{"_id": f"d{i}", "title": "", "text": f"{topics[i % 4]} study {i}"} for i in range(40)]
    queries = [{"_id": f"q{j}", "text": t} for j, t in enumerate(topics)]
    qrels = [(f"q{j}", f"d{i}", 1) for j in range(4) for i in range(j, 40, 4)]
    sink = OrderedSink()
    result = run_hybrid(write_beir(tmp_path / "c", corpus, queries, qrels), tmp_path / "out", folds=2, sink=sink)
    assert_protocol(sink, len(result.metrics), n_attach=2)  # the outputs, then the retrieval bundle
    assert {p["method"] for p in sink.points} == set(result.metrics)
    convex = method_run(next(p for p in sink.points if p["method"] == "convex"))
    assert convex.metrics["ndcg@10"] == result.metrics["convex"]["ndcg@10"] and len(convex.params["cv_choices"]) == 2
    assert Path(convex.artifacts[0]).name == "convex.trec"


def test_feature_runners_report_through_the_sink(tmp_path):
    from workbench.runners.features import run_features, run_leakage

    sink = OrderedSink()
    result = run_features("ooc", tmp_path, sink=sink, progress=lambda m: None, n_rows=20_000, n_entities=500,
                          updates_per_key=20, memory_limit="50MB", threads=1)
    assert_protocol(sink, 1)
    assert sink.attached[0]["artifacts"] == [tmp_path / "ooc.json"] and result.payload["rows"] == 500
    sink = OrderedSink()
    leak = run_leakage(tmp_path / "leak", n_accounts=150, days=90, train_days=45, label_delay_days=14, seed=3,
                       sink=sink)
    assert_protocol(sink, 2)
    assert leak.summary["online_mismatches"] == 0
    assert leak.summary["naive_auc_offline"] > leak.summary["pit_auc_offline"]
