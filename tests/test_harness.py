"""The sweep harness: rows, Flat recall 1.0, resumability, the point callback, the panel callback; the
interleaved passes and the executor seam (a fake in-process executor: driver-only writes, ``node``,
SweepIncomplete, resume)."""

from __future__ import annotations

import json
import pickle
import socket

import numpy as np
import pandas as pd
import pytest

from workbench.bench.harness import (
    FAILURES_FILE,
    BenchSet,
    SweepSettings,
    TaskFailure,
    interleave,
    local_groups,
    measure_group,
    measure_point,
    run_sweep,
)
from workbench.bench.panel import panel_update, swept_parameter
from workbench.bench.results import read_results, write_results
from workbench.bench.timing import collect, time_pass, time_single_queries
from workbench.errors import QueryError, SweepIncomplete
from workbench.index.metrics import METRICS
from workbench.index.spec import parse_spec
from workbench.vectors.formats import synthetic_clusters

SPECS = ["faiss:Flat", "faiss:IVF16,Flat?nprobe=1,4", "hnswlib:M=8,ef_construction=40?ef=10,40"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    vs = synthetic_clusters(n=1500, dim=16, n_queries=40, n_clusters=15, seed=5, metric="cosine")
    return BenchSet.from_vector_set(vs, gt_cache=tmp_path_factory.mktemp("gt"), progress=False)


def sweep(data, out, points=None, specs=SPECS):
    return run_sweep(data, [parse_spec(s) for s in specs], k=5, out_dir=out, runs=2, warmup=5,
                     on_point=None if points is None else points.append, progress=False)


def test_rows_columns_and_flat_recall(data, tmp_path):
    points: list = []
    df = sweep(data, tmp_path, points)
    assert len(df) == 5 and [p["point"] for p in points] == df["point"].tolist()
    for col in ("index", "build_params", "query_params", "k", "recall", "recall_ids", "qps", "batch_qps",
                "p50_ms", "p95_ms", "p99_ms", "build_s", "size_bytes", *METRICS):
        assert col in df.columns
    flat = df[df["index"] == "faiss:Flat"].iloc[0]
    assert flat["recall"] == 1.0 and flat["recall_ids"] == 1.0
    assert json.loads(df[df["point"] == "faiss:IVF16,Flat?nprobe=4"].iloc[0]["query_params"]) == {"nprobe": 4}
    assert (df["qps"] > 0).all() and (df["p50_ms"] <= df["p99_ms"]).all()
    pd.testing.assert_frame_equal(read_results(tmp_path / "results.parquet"), df)


def test_sweep_resumes_and_skips_measured_points(data, tmp_path):
    first = sweep(data, tmp_path)
    points: list = []
    again = sweep(data, tmp_path, points)
    assert points == [] and len(again) == len(first)
    # lose two points (as if interrupted): only those are measured again
    kept = first[~first["point"].isin(["faiss:IVF16,Flat?nprobe=4", "hnswlib:M=8,ef_construction=40?ef=40"])]
    write_results(kept, tmp_path / "results.parquet")
    points = []
    resumed = sweep(data, tmp_path, points)
    assert sorted(p["point"] for p in points) == ["faiss:IVF16,Flat?nprobe=4",
                                                       "hnswlib:M=8,ef_construction=40?ef=40"]
    assert len(resumed) == 5


def test_k_beyond_the_data_or_empty_queries(data):
    with pytest.raises(QueryError, match="k=2000 is larger than the data set \\(1500 vectors\\)"):
        run_sweep(data, [parse_spec("faiss:Flat")], k=2000, progress=False)
    with pytest.raises(QueryError, match="the query set is empty"):
        BenchSet.from_vectors("x", np.ones((10, 4)), np.empty((0, 4)), "l2", gt_cache=False)


def test_single_query_timing_returns_results_in_order():
    walls, lat, out = time_single_queries(lambda r: r * 2, [np.array([i]) for i in range(10)], runs=3, warmup=2)
    assert len(walls) == 3 and lat.shape == (10,) and [int(o[0]) for o in out] == list(range(0, 20, 2))


def test_timed_pass_holds_results_only_when_asked():
    rows = [np.array([i]) for i in range(5)]
    wall, lat, out = time_pass(lambda r: r * 2, rows)
    assert out is None and lat.shape == (5,) and wall == pytest.approx(lat.sum())
    _, _, kept = time_pass(lambda r: r * 2, rows, keep=True)
    assert [int(o[0]) for o in kept] == [0, 2, 4, 6, 8]
    assert [int(o[0]) for o in collect(lambda r: r + 1, rows)] == [1, 2, 3, 4, 5]


def test_panel_callback_moves_the_point(data, tmp_path):
    df = sweep(data, tmp_path)
    assert swept_parameter(df, "faiss:IVF16,Flat") == ("nprobe", [1, 4])
    low = panel_update(df, "faiss:IVF16,Flat", 1)
    high = panel_update(df, "faiss:IVF16,Flat", 4)
    assert low["point"].endswith("nprobe=1") and high["point"].endswith("nprobe=4")
    assert high["recall"] >= low["recall"]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    row = panel_update(df, "hnswlib:M=8,ef_construction=40", 40, ax=ax)
    assert row["point"].endswith("ef=40") and ax.get_xscale() == "logit"
    plt.close(fig)
    with pytest.raises(ValueError, match="ef=7 was not measured"):
        panel_update(df, "hnswlib:M=8,ef_construction=40", 7)


def test_default_sweeps_cover_every_family():
    from workbench.bench.reference import (
        default_specs,
        family_tour_specs,
        reference_specs,
    )

    families = {s.make("cosine").family for s in default_specs(50_000, 384)}
    assert families == {"faiss:Flat", "faiss:SQfp16", "hnswlib:HNSW", "faiss:HNSW,Flat", "faiss:HNSW,SQ8",
                        "faiss:IVF,Flat", "faiss:IVF,SQ8", "faiss:IVF,PQ", "faiss:IVF,PQ,RFlat",
                        "faiss:IVF,PQfs,RFlat", "scann:tree-AH", "usearch:HNSW"}
    assert "faiss:IVF256,PQ48?nprobe=1,2,4,8,16,32,64" in [s.text for s in default_specs(50_000, 384)]
    assert "faiss:IVF64,PQ4x4?nprobe=1,2,4,8,16,32,64" in [s.text for s in default_specs(4000, 32)]
    tour = family_tour_specs(50_000, 384)
    assert tour[-1].build == {"factory": "OPQ48,IVF256,PQ48", "train_size": 10_000, "opq_niter": 10}
    assert [s.label for s in reference_specs()][:2] == ["hnswlib:M=16,ef_construction=200",
                                                         "faiss:HNSW32,Flat"]


def test_make_panel_builds_the_widgets_and_redraws_on_change(data, tmp_path):
    from workbench.bench.panel import make_panel
    from workbench.index.spec import parse_spec

    df = run_sweep(data, [parse_spec("faiss:HNSW16,Flat?efSearch=8,32")], k=10, out_dir=tmp_path, runs=1,
                   progress=False)
    panel = make_panel(df)
    dropdown, slider, _ = panel.children
    assert slider.description == "efSearch" and list(slider.options) == [8, 32]
    slider.value = 32  # the observer redraws through panel_update; it must not raise


class FakeExecutor:
    """Runs each item in this process on pickled copies (as a remote node would see them); items whose build
    label is in ``fail`` come back as a TaskFailure. Checks that no task writes to ``out``."""

    def __init__(self, out, fail=()):
        self.out, self.fail, self.tasks, self.closed = out, set(fail), [], False

    def _files(self):
        return {p.name: p.read_bytes() for p in self.out.iterdir()} if self.out.exists() else {}

    def map(self, fn, items, shared, num_cpus=1):
        for item in items:
            labels = [spec.label for spec, _ in item[0]]
            if set(labels) & self.fail:
                yield item, TaskFailure(item, "Traceback (most recent call last):\nRuntimeError: worker died"), "n9"
                continue
            before = self._files()
            result = fn(pickle.loads(pickle.dumps(shared)), pickle.loads(pickle.dumps(item)))
            assert self._files() == before, "a task wrote to the results folder"
            self.tasks.append(labels)
            yield item, result, f"node-{len(self.tasks) % 2}"

    def close(self):
        self.closed = True


def test_executor_one_task_per_build_rows_carry_the_node(data, tmp_path):
    ex, points = FakeExecutor(tmp_path), []
    df = run_sweep(data, [parse_spec(s) for s in SPECS], k=5, out_dir=tmp_path, runs=2, warmup=5,
                   on_point=points.append, progress=False, executor=ex)
    assert ex.tasks == [["faiss:Flat"], ["faiss:IVF16,Flat"], ["hnswlib:M=8,ef_construction=40"]]
    assert df["node"].tolist() == ["node-1", "node-0", "node-0", "node-1", "node-1"]
    assert [p["node"] for p in points] == df["node"].tolist()
    pd.testing.assert_frame_equal(read_results(tmp_path / "results.parquet"), df)
    assert not (tmp_path / FAILURES_FILE).exists()


def test_failed_task_is_recorded_the_rest_written_and_resume_measures_it(data, tmp_path):
    specs = [parse_spec(s) for s in SPECS]
    with pytest.raises(SweepIncomplete, match=r"1 build configuration\(s\) failed: faiss:IVF16,Flat\?nprobe=1,4 "
                                              r"\(RuntimeError: worker died\); 3 point\(s\) of the others written") as e:
        run_sweep(data, specs, k=5, out_dir=tmp_path, runs=1, warmup=5, progress=False,
                  executor=FakeExecutor(tmp_path, fail={"faiss:IVF16,Flat"}))
    assert e.value.failed == ("faiss:IVF16,Flat?nprobe=1,4",)
    written = read_results(tmp_path / "results.parquet")
    assert sorted(written["index"].unique()) == ["faiss:Flat", "hnswlib:M=8,ef_construction=40"] and len(written) == 3
    assert json.loads((tmp_path / FAILURES_FILE).read_text()) == [
        {"configs": ["faiss:IVF16,Flat?nprobe=1,4"], "error": "RuntimeError: worker died"}]
    points: list = []
    ex = FakeExecutor(tmp_path)
    df = run_sweep(data, specs, k=5, out_dir=tmp_path, runs=1, warmup=5, on_point=points.append, progress=False,
                   executor=ex)
    assert ex.tasks == [["faiss:IVF16,Flat"]] and [p["point"] for p in points] == [
        "faiss:IVF16,Flat?nprobe=1", "faiss:IVF16,Flat?nprobe=4"]
    assert len(df) == 5 and not (tmp_path / FAILURES_FILE).exists()


def test_local_sweep_is_one_group_when_it_fits_and_names_this_host(data, tmp_path):
    df = sweep(data, tmp_path)
    assert set(df["node"]) == {socket.gethostname()}
    assert (df["runs"] == 2).all() and (df["qps_lo"] <= df["qps"]).all() and (df["qps"] <= df["qps_hi"]).all()
    assert (df["qps_hi"] == df["qps_best"]).all() and (df["qps_coverage"] == 0.5).all()   # 2 passes: the range
    todo = [(parse_spec(s), parse_spec(s).points()) for s in SPECS]
    assert local_groups(data, todo, available_bytes=1e12) == [todo]
    # 1500 x 16: Flat 64 B a vector (x1.5 -> 144 KB), so 300 KB of memory (150 KB usable) splits the sweep
    assert [[s.label for s, _ in g] for g in local_groups(data, todo, available_bytes=3e5)] == [
        ["faiss:Flat"], ["faiss:IVF16,Flat"], ["hnswlib:M=8,ef_construction=40"]]


class Recorder:
    """A stand-in for a point's timing: records the order of its passes."""

    def __init__(self, name, log):
        self.name, self.log, self.passes = name, log, 0

    def wants_pass(self, s):
        return self.passes < s.runs

    def single_pass(self, s):
        self.passes += 1
        self.log.append(self.name)

    def batch_pass(self, s):
        pass


def test_interleaved_rounds_rotate_so_no_point_is_always_first():
    log: list = []
    interleave([Recorder(n, log) for n in "abcdef"], SweepSettings(runs=3))
    rounds = ["".join(log[i:i + 6]) for i in range(0, 18, 6)]
    assert rounds == ["abcdef", "cdefab", "efabcd"]          # round r starts at r * 6 // 3


def test_group_measures_the_same_results_as_one_point_at_a_time(data):
    """Interleaving must not mix the query parameters of points that share one built index."""
    spec = parse_spec("faiss:IVF64,Flat?nprobe=1,2,64")
    settings = SweepSettings(k=5, runs=2, warmup=5, batch_threads=1)
    rows = measure_group(data, [(spec, spec.points())], settings)
    index = spec.make(data.metric)
    index.build(data.base)
    for row, qp in zip(rows, spec.points()):
        alone = measure_point(index, data, 5, qp, 1, 1, 2, 5, 0.0, index.size_bytes())
        assert row["recall"] == alone["recall"] and row["recall_ids"] == alone["recall_ids"]
        assert {"qps", "qps_lo", "qps_hi", "qps_best", "qps_coverage", "runs"} <= set(alone)
    assert rows[0]["recall"] < rows[2]["recall"]
