"""`workbench ann` and `workbench ann-overhead` through workbench.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tracking_support import use_store

from workbench.cli import main
from workbench.vectors.formats import save_npz, synthetic_clusters


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    vs = synthetic_clusters(n=1200, dim=16, n_queries=30, n_clusters=10, seed=6, metric="l2")
    return str(save_npz(vs, tmp_path_factory.mktemp("v") / "small.npz"))


def test_ann_writes_results_summary_and_plots(npz, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["ann", npz, "--index", "faiss:Flat", "--index", "faiss:IVF8,Flat?nprobe=1,8",
               "--index", "hnswlib:M=8,ef_construction=40?ef=10,50", "--k", "5", "--runs", "1",
               "--out", str(out), "--no-track", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["k"] == 5 and summary["n_points"] == 5 and summary["dataset"]["metric"] == "l2"
    assert summary["best_qps_at_recall"]["faiss:Flat"]["0.99"]["recall"] == 1.0
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["point"]) >= {"faiss:IVF8,Flat?nprobe=8", "hnswlib:M=8,ef_construction=40?ef=50"}
    for name in ("summary.json", "recall_qps.png", "recall_batch_qps.png", "build_size.png"):
        assert (out / name).stat().st_size > 0


def test_ann_human_output_and_bad_spec(npz, tmp_path, capsys):
    assert main(["ann", npz, "--index", "faiss:Flat", "--k", "3", "--runs", "1", "--out", str(tmp_path),
                 "--no-track"]) == 0
    text = capsys.readouterr().out
    assert "best QPS at recall >= 0.90 / 0.95 / 0.99" in text and "faiss:Flat" in text
    assert main(["ann", npz, "--index", "faiss:IVF8,Nonsense", "--out", str(tmp_path), "--no-track"]) == 2
    assert "faiss cannot build factory string 'IVF8,Nonsense' at dimension 16" in capsys.readouterr().err
    assert main(["ann", npz, "--index", "hnswlib:M=8?nprobe=2", "--out", str(tmp_path)]) == 2
    assert "unknown hnswlib query parameter(s) nprobe" in capsys.readouterr().err
    assert main(["ann", str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_ann_overhead_prints_both_figures(npz, tmp_path, capsys):
    rc = main(["ann-overhead", npz, "--index", "hnswlib:M=8,ef_construction=40?ef=20",
               "--index", "faiss:IVF8,Flat?nprobe=2", "--runs", "2", "--out", str(tmp_path), "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["point"] for r in payload["results"]] == ["hnswlib:M=8,ef_construction=40?ef=20",
                                                        "faiss:IVF8,Flat?nprobe=2"]
    for r in payload["results"]:
        assert r["harness_qps"] > 0 and r["bare_qps"] > 0
        assert r["ratio"] == pytest.approx(r["harness_qps"] / r["bare_qps"])
        assert r["within_3pct"] == (r["ratio"] >= 0.97)
    assert json.loads((tmp_path / "overhead.json").read_text()) == payload


def test_ann_overhead_bare_loops_of_usearch_and_scann_return_the_harness_results(npz, tmp_path):
    """The bare loops call the libraries' own Python API; they must search what the harness searches."""
    import numpy as np

    from workbench.bench.harness import BenchSet
    from workbench.bench.overhead import bare_search
    from workbench.index.spec import parse_spec
    from workbench.vectors.formats import load_vectors

    data = BenchSet.from_vector_set(load_vectors(npz), gt_cache=False, progress=False)
    for text in ("usearch:M=8,ef_construction=40?ef=20", "scann:leaves=8?leaves_to_search=2&pre_reorder=20"):
        spec = parse_spec(text)
        index = spec.make(data.metric)
        index.build(data.base)
        qp = spec.points()[0]
        q = index.prepare_queries(data.queries)
        harness, bare = index.searcher(5, **qp), bare_search(index, 5, qp, 1)
        for i in range(5):
            got = bare(q[i:i + 1])        # usearch: Matches (.keys); ScaNN: (ids, distances)
            got = np.asarray(got.keys if hasattr(got, "keys") else got[0]).reshape(-1)
            assert sorted(np.asarray(harness(q[i:i + 1])).reshape(-1).tolist()) == sorted(got.tolist()), text


def test_ann_ray_flag_connects_passes_the_executor_and_closes_it(npz, tmp_path, capsys, monkeypatch):
    """--ray ADDRESS goes to workbench.services.ray.connect (a stand-in module here; the Ray engineer's test
    runs a real two-node cluster); the rows carry the executor's node ids."""
    import sys
    import types

    calls = {}

    class InProcess:
        def map(self, fn, items, shared, num_cpus=1):
            for item in items:
                yield item, fn(shared, item), "ray-node-1"

        def close(self):
            calls["closed"] = True

    def connect(address):
        calls["address"] = address
        return InProcess()

    monkeypatch.setitem(sys.modules, "workbench.services.ray", types.SimpleNamespace(connect=connect))
    out = tmp_path / "ray"
    assert main(["ann", npz, "--index", "faiss:IVF8,Flat?nprobe=1,8", "--k", "3", "--runs", "2", "--out", str(out),
                 "--no-track", "--ray", "local", "--json"]) == 0
    capsys.readouterr()
    assert calls == {"address": "local", "closed": True}
    assert set(pd.read_parquet(out / "results.parquet")["node"]) == {"ray-node-1"}


@pytest.mark.slow
def test_ann_on_a_beir_folder_embeds_documents_and_queries(tiny_beir, tmp_path, capsys):
    assert main(["ann", str(tiny_beir), "--index", "faiss:Flat", "--k", "2", "--runs", "1",
                 "--out", str(tmp_path), "--no-track", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"]["n_base"] == 3 and summary["dataset"]["dim"] == 384


def test_ann_logs_points_and_its_outputs_to_the_tracking_store(npz, tmp_path, capsys, monkeypatch):
    use_store(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["ann", npz, "--index", "faiss:Flat", "--k", "3", "--runs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["runs", "--experiment", "index-benchmarks", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    point = next(r for r in runs if r["run_name"] == "faiss:Flat")
    assert point["metrics"]["recall"] == 1.0 and point["parent_run_id"]
    assert "workbench.git.commit" in point["tags"] and "workbench.version.faiss" in point["tags"]
    parent = next(r for r in runs if r["run_id"] == point["parent_run_id"])
    assert parent["metrics"]["n_points"] == 1 and parent["params"]["specs"] == "faiss:Flat"
    on_disk = {a["path"] for a in parent["artifacts"] if Path(a["local_path"]).is_file()}
    assert {"report/results.parquet", "report/summary.json", "report/recall_qps.png"} <= on_disk
