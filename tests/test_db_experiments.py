"""The database experiments against a real PostgreSQL (and LanceDB on disk): in-database filtering exact
where the strategy is exact and short without iterative scans, partition pruning, updates, concurrency.

The small set: 2,000 x 32 Gaussian clusters (``pg_support.clustered``), cosine, k = 10. At 1% selectivity
20 rows are allowed; HNSW with ``ef_search = 40`` then sees about 0.4 allowed rows per query without
iterative scans, and with them (``max_scan_tuples`` 20,000 > 2,000 rows) it walks on until it has 10.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pg_support import clustered, pg_server_fixture, workbench_tables  # noqa: F401  (the fixture pg_server)

from workbench.bench.harness import BenchSet
from workbench.bench.pg_filtered import build_db_curves, db_filtered_sweep
from workbench.bench.pg_tiered import tiered_experiment
from workbench.bench.pg_updates import updates_experiment
from workbench.cli import main
from workbench.errors import DatasetError, QueryError
from workbench.index.exact import ExactIndex
from workbench.index.metadata import Metadata
from workbench.index.pgvector_sql import attribute_columns
from workbench.index.spec import parse_spec
from workbench.runners.db import run_concurrency
from workbench.tracking.sink import CollectingSink

BASE, QUERIES = clustered(2000, 32, 40)
K = 10


def test_db_filtered_exact_where_exact_and_short_without_iterative_scans(pg_server):
    meta = Metadata.synthetic(len(BASE), seed=0)
    specs = [parse_spec("pgvector:hnsw,m=16,ef_construction=64?ef_search=40"), parse_spec("pgvector:exact"),
             parse_spec("lancedb:exact")]
    before = workbench_tables(pg_server.uri)
    curves = build_db_curves(BASE, "cosine", specs, meta, progress=False)
    try:
        frame = db_filtered_sweep(BASE, QUERIES, "cosine", meta, curves, k=K, selectivities=(0.01, 0.5), runs=1,
                                  warmup=2, progress=False)
        exact = ExactIndex("cosine")
        exact.build(BASE)
        allowed = meta.select("u < 0.01")
        truth = exact.search(QUERIES, K, allowed=allowed)[1]
        planner = next(c for c in curves if c.strategy == "planner")
        one = planner.searcher(K, "u < 0.01", allowed)
        q = planner.index.prepare_queries(QUERIES)
        assert [one(q[i:i + 1]) for i in range(len(q))] == truth.tolist()     # the seq/bitmap scan is exact
    finally:
        for c in curves:
            c.index.close()
    assert workbench_tables(pg_server.uri) == before
    by = frame.set_index(["strategy", "family", "selectivity"])
    for strategy, family in (("planner", "pgvector:exact"), ("prefilter", "lancedb:exact")):
        for s in (0.01, 0.5):
            assert by.loc[(strategy, family, s), "recall"] == 1.0
            assert by.loc[(strategy, family, s), "frac_short"] == 0.0
    assert by.loc[("iterative_off", "pgvector:hnsw", 0.01), "frac_short"] > 0.9          # the silent under-return
    assert by.loc[("iterative_off", "pgvector:hnsw", 0.01), "mean_results"] < 3
    for strategy in ("strict_order", "relaxed_order"):
        assert by.loc[(strategy, "pgvector:hnsw", 0.01), "frac_short"] == 0.0
        assert by.loc[(strategy, "pgvector:hnsw", 0.01), "recall"] > 0.9
    assert by.loc[("postfilter", "lancedb:exact", 0.01), "frac_short"] == 1.0
    assert (frame["n_disallowed"] == 0).all()
    assert set(frame.loc[frame["family"] == "pgvector:hnsw", "plan"]) == {"Index Scan (v_idx)"}


def test_tiered_prunes_to_recent_partitions(pg_server):
    before = workbench_tables(pg_server.uri)
    frame, layout = tiered_experiment(BASE, QUERIES[:20], "cosine", k=K, n_quarters=4, archive_quarters=8,
                                      recent_quarters=1, runs=1, warmup=2)
    assert workbench_tables(pg_server.uri) == before
    rows = {(r["layout"], r["scope"], r["iterative_scan"]): r for r in frame.to_dict("records")}
    recent = rows[("partitioned", "recent", "off")]
    assert recent["pruned"] and recent["scanned"] == "2025q4" and recent["n_scanned"] == 1
    assert layout["recent_partitions"] == [layout["parent"] + "_2025q4"]
    every = rows[("partitioned", "all", "off")]
    assert every["n_scanned"] == 5 and "archive" in every["scanned"]
    assert 0 < recent["n_in_scope"] < len(BASE) and every["n_in_scope"] == len(BASE)
    # pruned partitions hold only matching rows: nothing is filtered after the index scan
    assert recent["frac_short"] == 0.0 and recent["recall"] > 0.9
    assert rows[("single", "recent", "off")]["frac_short"] > 0.5
    assert rows[("single", "recent", "relaxed_order")]["frac_short"] == 0.0


def test_updates_reindex_not_worse_than_before_vacuum(pg_server):
    specs = [parse_spec("pgvector:hnsw,m=16,ef_construction=64?ef_search=40"),
             parse_spec("pgvector:ivfflat,lists=20?probes=2")]
    frame = updates_experiment(BASE, QUERIES[:30], "cosine", specs, k=K, fraction=0.1, runs=1, warmup=2)
    assert len(frame) == 8
    for index, g in frame.groupby("index"):
        by = g.set_index("stage")
        assert list(by.index) == ["built", "updated", "vacuumed", "reindexed"]
        # REINDEX builds a new random graph (new k-means lists): it may differ by a neighbour or two, never
        # fall below the state before VACUUM by more than that
        # REINDEX draws a new graph (HNSW) or retrains k-means (IVFFlat): recall moves by a few queries' worth
        assert by.loc["reindexed", "recall"] >= by.loc["updated", "recall"] - 0.05, by["recall"].to_dict()
        n0 = by.loc["built", "n_live"]
        assert by.loc["updated", "n_live"] == n0 and by.loc["updated", "n_deleted"] == by.loc["updated", "n_inserted"]
        assert n0 + by.loc["updated", "n_inserted"] == len(BASE)


def test_concurrency_one_row_per_client_count(pg_server, tmp_path):
    data = BenchSet.from_vectors("clusters", BASE, QUERIES, "cosine", gt_cache=False, progress=False)
    sink = CollectingSink()
    result = run_concurrency(data, tmp_path, specs=["pgvector:hnsw?ef_search=10,40", "hnswlib:M=16?ef=10,40"],
                             clients=(1, 2, 3), target_recall=0.9, per_client=15, sink=sink, progress=False)
    frame = result.frame
    assert len(frame) == 6 and len(sink.points) == 6
    for point, g in frame.groupby("point"):
        assert g["clients"].tolist() == [1, 2, 3]
        assert (g["queries"] == g["clients"] * 15).all() and not g["time_limited"].any()
        assert (g["qps"] > 0).all() and (g["p50_ms"] <= g["p99_ms"]).all()
        assert g["reached"].all() and (g["recall"] >= 0.9).all()
    summary = json.loads((tmp_path / "concurrency.json").read_text())
    assert set(summary["qps"]) == set(frame["point"]) and (tmp_path / "concurrency.png").is_file()


def test_bad_input_one_line(pg_server, tmp_path, capsys):
    data = "synthetic:n=500,dim=8,queries=5"
    assert main(["concurrency", data, "--index", "exact", "--clients", "0,2", "--out", str(tmp_path),
                 "--no-track"]) == 2
    assert main(["db-filtered", data, "--index", "faiss:HNSW32,Flat", "--out", str(tmp_path), "--no-track"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert err[0].endswith("error: argument --clients: expected comma-separated positive integers, got '0,2'")
    assert err[1].startswith("error: in-database filtering takes pgvector and lancedb specs, got faiss:HNSW32,Flat")
    with pytest.raises(QueryError, match=r"client counts must be positive integers, got \[0, 2\]"):
        run_concurrency(BenchSet.from_vectors("c", BASE[:50], QUERIES[:2], "cosine", gt_cache=False, progress=False),
                        tmp_path, specs=["exact"], clients=(0, 2), progress=False)
    with pytest.raises(DatasetError, match="text values of 1 to 2 bytes"):
        attribute_columns({"c": np.array(["a", "bb"])})
