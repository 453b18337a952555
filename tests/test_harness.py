"""The sweep harness: rows, Flat recall 1.0, resumability, the point callback, the panel callback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.bench.harness import BenchSet, run_sweep, time_single_queries
from workbench.bench.panel import panel_update, swept_parameter
from workbench.bench.results import read_results, write_results
from workbench.errors import QueryError
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
