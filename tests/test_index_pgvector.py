"""PgvectorIndex against a real PostgreSQL: exact recall 1.0, HNSW/IVFFlat equal to hand-written SQL under
the same settings, halfvec and bit+rerank recall, limits and bad input, filters, cleanup, harness and
overhead command."""

from __future__ import annotations

import gc
import json

import numpy as np
import psycopg
import pytest
from pg_support import (  # noqa: F401  (the fixtures pg_server, pgvector_registered)
    brute_force,
    clustered,
    pg_server_fixture,
    pgvector_registered_fixture,
    recall,
    workbench_tables,
)
from pgvector.psycopg import register_vector

from workbench.errors import DatabaseError, IndexSpecError, QueryError
from workbench.index.pgvector import PgvectorIndex, build_text, parse_build

BASE, QUERIES = clustered(2000, 32, 50)
K = 10


@pytest.fixture(scope="module")
def hnsw(pg_server):
    index = PgvectorIndex("hnsw", "cosine", m=16, ef_construction=64)
    index.build(BASE)
    yield index
    index.close()


def own_sql_ids(uri: str, sql: str, settings: dict[str, str], queries: np.ndarray) -> list[list[int]]:
    """Top-k ids by a direct psycopg query of the test's own SQL under ``settings``, as many as it returns (an
    IVFFlat probe of a short list returns fewer than k)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        register_vector(conn)
        for name, value in settings.items():
            conn.execute(f"SET {name} = {value}")
        return [[r[0] for r in conn.execute(sql, (q,)).fetchall()] for q in queries]


def padded(rows: list[list[int]]) -> list[list[int]]:
    """``rows`` as a batch search returns them: each padded with -1 to k."""
    return [r + [-1] * (K - len(r)) for r in rows]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_recall_one_and_distances(pg_server, metric):
    index = PgvectorIndex("exact", metric)
    index.build(BASE)
    d, ids = index.search(QUERIES, K)
    true_d, true_ids = brute_force(BASE, QUERIES, K, metric)
    assert recall(ids, true_ids) == 1.0
    np.testing.assert_allclose(d, true_d, rtol=1e-4, atol=1e-4)
    one = index.searcher(K)
    q = index.prepare_queries(QUERIES)
    assert [one(q[i:i + 1]) for i in range(len(q))] == ids.tolist()
    assert index.size_bytes() == index.build_stats["table_bytes"] > 0
    index.close()


def test_hnsw_equals_direct_sql_under_same_settings(pg_server, hnsw):
    q = hnsw.prepare_queries(QUERIES)
    for ef in (10, 40):
        mine = own_sql_ids(pg_server.uri, f"SELECT id FROM {hnsw.table} ORDER BY v <=> %s LIMIT {K}",
                           {"hnsw.ef_search": str(ef)}, q)
        one = hnsw.searcher(K, ef_search=ef)
        assert [one(q[i:i + 1]) for i in range(len(q))] == mine
        assert hnsw.search(QUERIES, K, ef_search=ef)[1].tolist() == padded(mine)
    truth = brute_force(BASE, QUERIES, K, "cosine")[1]
    assert recall(hnsw.search(QUERIES, K, ef_search=100)[1], truth) >= 0.95
    stats = hnsw.build_stats
    assert stats["rows"] == 2000 and stats["load_rows_per_s"] > 0 and stats["index_bytes"] == hnsw.size_bytes() > 0
    assert hnsw.effective_query_params(ef_search=10) == {"ef_search": 10, "iterative_scan": "off",
                                                         "max_scan_tuples": 20000}


def test_settings_take_effect_per_point_without_rebuild(pg_server, hnsw):
    short = hnsw.search(QUERIES, K, ef_search=5)[1]         # without iterative scans: at most ef_search rows
    assert np.all((short == -1).sum(axis=1) == K - 5)
    assert np.all(hnsw.search(QUERIES, K, ef_search=5, iterative_scan="strict_order")[1] >= 0)
    one = hnsw.searcher(K, ef_search=5)
    assert len(one(hnsw.prepare_queries(QUERIES)[:1])) == 5


def test_hnsw_relaxed_iterative_scan_equals_readme_sql(pg_server, hnsw):
    q = hnsw.prepare_queries(QUERIES)
    mine = own_sql_ids(pg_server.uri, f"WITH r AS MATERIALIZED (SELECT id, v <=> %s AS d FROM {hnsw.table} "
                                      f"ORDER BY d LIMIT {K}) SELECT id FROM r ORDER BY d",
                       {"hnsw.ef_search": "20", "hnsw.iterative_scan": "relaxed_order"}, q)
    assert hnsw.search(QUERIES, K, ef_search=20, iterative_scan="relaxed_order")[1].tolist() == padded(mine)


def test_ivfflat_equals_direct_sql_under_same_settings(pg_server):
    index = PgvectorIndex("ivfflat", "l2", lists=20)
    index.build(BASE)
    q = index.prepare_queries(QUERIES)
    for probes in (1, 4):
        mine = own_sql_ids(pg_server.uri, f"SELECT id FROM {index.table} ORDER BY v <-> %s LIMIT {K}",
                           {"ivfflat.probes": str(probes)}, q)
        one = index.searcher(K, probes=probes)
        assert [one(q[i:i + 1]) for i in range(len(q))] == mine
    truth = brute_force(BASE, QUERIES, K, "l2")[1]
    assert recall(index.search(QUERIES, K, probes=20)[1], truth) == 1.0     # every list probed: exact
    index.close()


@pytest.mark.parametrize("vtype, params, threshold", [("halfvec", {"ef_search": 40}, 0.95),
                                                      ("bit", {"ef_search": 100, "rerank": 100}, 0.90)])
def test_halfvec_and_bit_rerank_recall(pg_server, vtype, params, threshold):
    index = PgvectorIndex("hnsw", "cosine", type=vtype)
    index.build(BASE)
    d, ids = index.search(QUERIES, K, **params)
    truth = brute_force(BASE, QUERIES, K, "cosine")[1]
    assert recall(ids, truth) >= threshold
    assert np.all(np.diff(d, axis=1) <= 1e-6)            # exact distances, best first
    assert index.family == f"pgvector:hnsw-{vtype}"
    index.close()


def test_dimension_limits_name_both_numbers(pg_server):
    with pytest.raises(IndexSpecError, match=r"2,000 dimensions; the vectors have 2,001"):
        PgvectorIndex("hnsw").validate(2001)
    with pytest.raises(IndexSpecError, match=r"4,000 dimensions; the vectors have 4,096"):
        PgvectorIndex("ivfflat", type="halfvec").validate(4096)
    with pytest.raises(IndexSpecError, match=r"16,000 dimensions; the vectors have 16,001"):
        PgvectorIndex("exact").validate(16001)
    PgvectorIndex("hnsw", type="bit").validate(8000)
    with pytest.raises(IndexSpecError, match="2,000"):         # refused before any server is involved
        PgvectorIndex("hnsw").build(np.ones((3, 2001), dtype=np.float32))


def test_nan_refused_before_loading(pg_server):
    x = BASE.copy()
    x[7, 3] = np.nan
    before = workbench_tables(pg_server.uri)
    with pytest.raises(QueryError, match=r"(?i)nan.*row 7"):
        PgvectorIndex("hnsw").build(x)
    assert workbench_tables(pg_server.uri) == before


def test_filtered_search_through_sql(pg_server, hnsw):
    allowed = np.arange(0, 2000, 7)
    exact = PgvectorIndex("exact", "cosine")
    exact.build(BASE)
    ids = exact.search(QUERIES, K, allowed=allowed)[1]
    truth = brute_force(BASE[allowed], QUERIES, K, "cosine")[1]
    assert ids.tolist() == allowed[truth].tolist()
    few = np.array([3, 5, 11])
    ids = hnsw.search(QUERIES, K, allowed=few, ef_search=40)[1]
    assert set(ids.ravel().tolist()) <= {3, 5, 11, -1} and ids.shape == (len(QUERIES), K)
    one = exact.searcher(K, allowed=allowed)
    q = exact.prepare_queries(QUERIES)
    assert one(q[:1]) == allowed[truth[0]].tolist()
    exact.close()


def test_query_parameter_errors(pg_server, hnsw):
    with pytest.raises(IndexSpecError, match="probes do not apply"):
        hnsw.search(QUERIES, K, probes=2)
    with pytest.raises(IndexSpecError, match="must be an integer in"):
        hnsw.search(QUERIES, K, ef_search=5000)
    with pytest.raises(IndexSpecError, match="strict_order"):
        PgvectorIndex("ivfflat")._check_query_params({"iterative_scan": "strict_order"})
    bit = PgvectorIndex("hnsw", type="bit")
    bit.build(BASE[:100])
    with pytest.raises(IndexSpecError, match="rerank=5 is smaller than k=10"):
        bit.search(QUERIES, K, rerank=5)
    with pytest.raises(DatabaseError, match="cannot be saved"):
        bit.save("/tmp/never")
    bit.close()


def test_build_grammar():
    assert parse_build("hnsw,m=8,ef_construction=32,type=halfvec", "s") == {
        "kind": "hnsw", "m": 8, "ef_construction": 32, "type": "halfvec", "maintenance_work_mem": "512MB",
        "max_parallel_maintenance_workers": 2}
    assert build_text(parse_build("ivfflat,lists=200,maintenance_work_mem=1GB", "s")) == \
        "ivfflat,lists=200,maintenance_work_mem=1GB"
    assert build_text(parse_build("exact", "s")) == "exact"
    for body, msg in [("", "needs a kind"), ("flat", "kind must be one of"), ("hnsw,lists=3", "not a build parameter"),
                      ("hnsw,m=200", r"\[2, 100\]"), ("hnsw,m=32,ef_construction=40", "at least 2 \\* m = 64"),
                      ("hnsw,type=float", "type must be one of"), ("ivfflat,maintenance_work_mem=lots", "memory size")]:
        with pytest.raises(IndexSpecError, match=msg):
            parse_build(body, "s")


def test_close_and_garbage_collection_drop_tables(pg_server):
    index = PgvectorIndex("exact")
    index.build(BASE[:50])
    table = index.table
    assert table in workbench_tables(pg_server.uri)
    del index
    gc.collect()
    assert table not in workbench_tables(pg_server.uri)


def test_harness_sweep_and_overhead_command(pg_server, pgvector_registered, tmp_path, capsys):
    from workbench.bench.harness import BenchSet, run_sweep
    from workbench.bench.pg_overhead import server_time_ms
    from workbench.cli import main
    from workbench.index.spec import parse_spec

    spec = parse_spec("pgvector:hnsw,m=16,ef_construction=64?ef_search=10,40")
    assert spec.label == "pgvector:hnsw,m=16,ef_construction=64"
    data = BenchSet.from_vectors("clusters", BASE, QUERIES, "cosine", gt_cache=False, progress=False)
    before = workbench_tables(pg_server.uri)
    df = run_sweep(data, [spec], k=K, runs=1, warmup=5, progress=False)
    assert df["point"].tolist() == ["pgvector:hnsw,m=16,ef_construction=64?ef_search=10",
                                    "pgvector:hnsw,m=16,ef_construction=64?ef_search=40"]
    assert df["recall"].iloc[1] >= df["recall"].iloc[0] and df["recall"].iloc[1] > 0.9
    assert workbench_tables(pg_server.uri) == before     # the index the harness built went with it
    index = spec.make("cosine")
    index.build(BASE)
    t = server_time_ms(index, QUERIES[:5], K, ef_search=40)
    assert t.shape == (5,) and np.all(t > 0)
    index.close()
    rc = main(["pg", "overhead", "synthetic:n=1000,dim=16,queries=50", "--index",
               "pgvector:hnsw?ef_search=20", "--runs", "2", "--sample", "5", "--out", str(tmp_path), "--json"])
    assert rc == 0
    rows = json.loads((tmp_path / "overhead.json").read_text())["results"]
    assert rows[0]["point"] == "pgvector:hnsw,m=16,ef_construction=64?ef_search=20"
    assert rows[0]["harness_qps"] > 0 and rows[0]["bare_qps"] > 0 and rows[0]["server_p50_ms"] > 0
    capsys.readouterr()
