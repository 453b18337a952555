"""Filtered search: predicates against pandas, index filtering on attribute selections, filtered recall,
the sweep, its runner (tracked to a real store) and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from workbench.bench.filtered import IndexUnderTest, filtered_sweep, recommend
from workbench.bench.harness import BenchSet
from workbench.bench.reference import default_specs, ivf_lists
from workbench.bench.results import read_results, write_results
from workbench.cli import main
from workbench.errors import DatasetError, DuplicateResultError, EmptySelectionError, PredicateError, QueryError
from workbench.index.exact import ExactIndex
from workbench.index.faiss import FaissIndex
from workbench.index.hnswlib import HnswlibIndex
from workbench.index.metadata import Metadata
from workbench.vectors.recall import TIE_EPS, recall_ties

N, DIM, K = 600, 16, 10


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((N, DIM)).astype(np.float32), rng.standard_normal((12, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def meta() -> Metadata:
    return Metadata.synthetic(N, seed=3)


def built(index, base):
    index.build(base)
    return index


# ------------------------------------------------------------------------------ index filtering on selections

def test_prefilter_with_flat_equals_the_exact_subset(vectors, meta):
    base, queries = vectors
    flat, exact = built(FaissIndex("Flat", metric="cosine"), base), built(ExactIndex("cosine"), base)
    for predicate in ["u < 0.01", "u < 0.2", "category = 'c00' AND year >= 2000"]:
        allowed = meta.select(predicate)
        d, ids = flat.search(queries, K, allowed=allowed)
        ref_d, ref_ids = exact.search(queries, K, allowed=allowed)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("predicate", ["u < 0.01", "u < 0.1", "category IN ('c01', 'c02') OR year < 1993"])
def test_hnswlib_prefilter_honours_the_predicate(vectors, meta, predicate):
    base, queries = vectors
    index = built(HnswlibIndex(M=8, ef_construction=100, metric="cosine"), base)
    exact = built(ExactIndex("cosine"), base)
    allowed = meta.select(predicate)
    _, ids = index.search(queries, K, allowed=allowed, ef=200)
    assert np.isin(ids[ids >= 0], allowed).all()
    assert ((ids >= 0).sum(axis=1) == min(K, allowed.size)).all()
    true_d, _ = exact.search(queries, K, allowed=allowed)
    q = exact.prepare_queries(queries)
    assert recall_ties(exact.vectors, q, ids, true_d, K, "cosine", allowed).mean() >= 0.95  # ef=200 on 600: near exact


@pytest.mark.parametrize("factory,params", [("HNSW16,Flat", {"efSearch": 16}), ("IVF8,Flat", {"nprobe": 2})])
@pytest.mark.parametrize("mode", ["pre", "post"])
def test_faiss_never_returns_a_disallowed_id(vectors, meta, factory, params, mode):
    base, queries = vectors
    index = built(FaissIndex(factory, metric="ip"), base)
    allowed = meta.select("u < 0.03")
    _, ids = index.search(queries, K, allowed=allowed, filter_mode=mode, overfetch=10, **params)
    assert np.isin(ids[ids >= 0], allowed).all()


# ------------------------------------------------------------------------------ filtered recall

def test_filtered_recall_counts_ties_and_rejects_duplicates():
    base = np.array([[1.0, 0], [1.0, 0], [0.6, 0.8], [0, 1.0]], dtype=np.float32)
    exact = built(ExactIndex("ip"), base)
    q = np.array([[1.0, 0]], np.float32)
    allowed = np.array([0, 1, 2, 3])
    # id 1 ties with the true top-1 (id 0): tie-aware recall counts it
    true_d, _ = exact.search(q, 1, allowed=allowed)
    assert recall_ties(base, q, np.array([[1]]), true_d, 1, "ip", allowed).tolist() == [1.0]
    # a selection smaller than k: the denominator is the selection's size
    small = np.array([2, 3])
    true_d, _ = exact.search(q, 4, allowed=small)
    assert recall_ties(base, q, np.array([[2, -1, -1, -1]]), true_d, 4, "ip", small).tolist() == [0.5]
    # a disallowed id never counts, even when it is the closest
    assert recall_ties(base, q, np.array([[0, 2, 3, -1]]), true_d, 4, "ip", small).tolist() == [1.0]
    with pytest.raises(DuplicateResultError, match="query 0: id 2 appears more than once"):
        recall_ties(base, q, np.array([[2, 2, -1, -1]]), true_d, 4, "ip", small)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_similarity_recall_is_the_old_filtered_rule(vectors, meta, metric):
    """For similarities the kernel's ``-s <= -kth + eps`` is the old filtered rule ``s >= kth - eps``: the
    filtered figures (cosine) keep their values. Only l2 moved, from squared to plain Euclidean slack."""
    base, queries = vectors
    hnsw, exact = built(HnswlibIndex(M=4, ef_construction=20, metric=metric), base), built(ExactIndex(metric), base)
    b, q = exact.vectors, exact.prepare_queries(queries)
    for predicate in ("u < 0.05", "u < 0.5"):
        allowed = meta.select(predicate)
        true_d, _ = exact.search(queries, K, allowed=allowed)
        _, ids = hnsw.search(queries, K, allowed=allowed, filter_mode="post", overfetch=2, ef=10)
        n = min(K, allowed.size)
        found = np.where(ids >= 0, np.einsum("qd,qkd->qk", q, b[np.maximum(ids, 0)]), -np.inf)
        old = ((found >= true_d[:, n - 1:n] - TIE_EPS) & np.isin(ids, allowed)).sum(axis=1) / n
        np.testing.assert_array_equal(recall_ties(b, q, ids, true_d, K, metric, allowed), np.minimum(old, 1.0))


# ------------------------------------------------------------------------------ predicates

@pytest.mark.parametrize("predicate,match", [
    ("colour = 'red'", "unknown column 'colour'"),
    ("year = 'nineteen'", "column 'year' is INTEGER, got text"),
    ("category < 3", "column 'category' is VARCHAR, got a number"),
    ("u < 0.1; DROP TABLE metadata", "unexpected character at position 7"),
    ("u < 0.1 OR 1 = 1", "expected a column name"),
    ("u <", "expected a value for column 'u' at the end"),
    ("(u < 0.1", r"expected \) at the end"),
    ("year NOT = 2000", "expected IN or BETWEEN after NOT"),
    ("year BETWEEN 1990", "expected AND"),
    ("   ", "predicate is empty"),
])
def test_bad_predicates_name_the_problem(meta, predicate, match):
    with pytest.raises(PredicateError, match=match):
        meta.select(predicate)


def test_empty_selection_is_an_error(meta):
    with pytest.raises(EmptySelectionError, match=r"predicate 'year > 2100' selects no ids of the 600"):
        meta.select("year > 2100")


def test_text_values_are_parameters_not_sql():
    frame = pd.DataFrame({"id": [0, 1, 2], "name": ["a", "it's", "x' OR '1'='1"]})
    meta = Metadata(frame)
    assert meta.select("name = 'it''s'").tolist() == [1]
    assert meta.select("name = 'x'' OR ''1''=''1'").tolist() == [2]
    with pytest.raises(EmptySelectionError):
        meta.select("name = 'zzz'")


@pytest.mark.parametrize("frame,match", [
    (pd.DataFrame({"key": [0, 1]}), "has no 'id' column"),
    (pd.DataFrame({"id": [0, 0]}), "repeats id 0"),
    (pd.DataFrame({"id": [0, -1]}), "non-negative integers"),
    (pd.DataFrame({"id": [0, 1], "bad name": [1, 2]}), "column 'bad name'"),
])
def test_bad_metadata_is_rejected(frame, match):
    with pytest.raises(PredicateError, match=match):
        Metadata(frame)


def test_synthetic_u_gives_exact_selectivity():
    meta = Metadata.synthetic(10_000, seed=1)
    for s in (0.001, 0.003, 0.01, 0.5):
        assert meta.select(f"u < {s}").size == round(s * 10_000)


# hypothesis: random predicates from the grammar against a pandas evaluation of the same tree

_FRAME = pd.DataFrame({
    "id": np.arange(200, dtype=np.int64),
    "category": [f"c{i % 7}" for i in range(200)],
    "year": (1990 + (np.arange(200) * 37) % 35).astype(np.int32),
    "u": (np.arange(200) * 0.618034) % 1.0,
})
_OPS = {"=": np.equal, "!=": np.not_equal, "<>": np.not_equal, "<": np.less, "<=": np.less_equal,
        ">": np.greater, ">=": np.greater_equal}


def _literal(column: str):
    if column == "category":
        return st.sampled_from([f"c{i}" for i in range(9)]).map(lambda v: (f"'{v}'", v))
    if column == "year":
        return st.integers(1985, 2030).map(lambda v: (str(v), v))
    return st.floats(0, 1, allow_nan=False).map(lambda v: (repr(v), v))


@st.composite
def _comparison(draw):
    column = draw(st.sampled_from(["category", "year", "u"]))
    kind = draw(st.sampled_from(["op", "in", "between"]))
    values = _FRAME[column].to_numpy()
    neg = draw(st.booleans())
    if kind == "op":
        op = draw(st.sampled_from(sorted(_OPS)))
        text, v = draw(_literal(column))
        return f"{column} {op} {text}", _OPS[op](values, v)
    if kind == "in":
        items = draw(st.lists(_literal(column), min_size=1, max_size=4))
        mask = np.isin(values, [v for _, v in items])
        sql = f"{column} {'NOT ' if neg else ''}IN ({', '.join(t for t, _ in items)})"
        return sql, ~mask if neg else mask
    (lo_t, lo), (hi_t, hi) = draw(_literal(column)), draw(_literal(column))
    mask = (values >= lo) & (values <= hi)
    return f"{column} {'NOT ' if neg else ''}BETWEEN {lo_t} AND {hi_t}", ~mask if neg else mask


def _combine(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: (f"({p[0][0]}) AND ({p[1][0]})", p[0][1] & p[1][1])),
        pair.map(lambda p: (f"({p[0][0]}) or ({p[1][0]})", p[0][1] | p[1][1])),
        children.map(lambda c: (f"NOT ({c[0]})", ~c[1])),
    )


@settings(max_examples=150, deadline=None)
@given(st.recursive(_comparison(), _combine, max_leaves=5))
def test_selection_matches_pandas(case):
    predicate, mask = case
    meta = _hypothesis_meta()
    expected = _FRAME["id"].to_numpy()[mask]
    event("empty selection" if expected.size == 0 else "non-empty selection")
    if expected.size == 0:
        with pytest.raises(EmptySelectionError):
            meta.select(predicate)
    else:
        got = meta.select(predicate)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


_META_CACHE: list[Metadata] = []


def _hypothesis_meta() -> Metadata:
    if not _META_CACHE:
        _META_CACHE.append(Metadata(_FRAME))
    return _META_CACHE[0]


# ------------------------------------------------------------------------------ the sweep, runner and CLI

def test_sweep_rows_callback_and_parquet(vectors, meta, tmp_path):
    base, queries = vectors
    flat = built(FaissIndex("Flat", metric="cosine"), base)
    hnsw = built(HnswlibIndex(M=8, ef_construction=50, metric="cosine"), base)
    rows: list[dict] = []
    frame = filtered_sweep(base, queries, "cosine", meta,
                           [IndexUnderTest(flat.label, flat), IndexUnderTest(hnsw.label, hnsw, {"ef": 64})],
                           k=K, selectivities=(0.01, 0.5), overfetch=(1, 10), runs=1, dataset="tiny",
                           on_point=rows.append, progress=False)
    # per selectivity: exact + 2 indexes x (prefilter + 2 post-filters)
    assert len(frame) == len(rows) == 2 * (1 + 2 * 3)
    assert rows[0]["strategy"] == "exact_subset" and rows[0]["index"] == "exact"
    assert (frame["n_disallowed"] == 0).all()
    assert (frame.loc[frame["strategy"] == "exact_subset", "recall"] == 1.0).all()
    flat_pre = frame[(frame["index"] == flat.label) & (frame["strategy"] == "prefilter")]
    assert (flat_pre["recall"] == 1.0).all() and (flat_pre["frac_short"] == 0).all()
    assert frame.loc[frame["strategy"] == "prefilter", "query_params"].tolist() == ["", "ef=64"] * 2
    # 1% of 600 ids is 6 < k: nothing can fill k, so nobody is "short"; post-filter x1 at 50% keeps ~5 of 10
    low = frame[frame["selectivity"] == 0.01]
    assert (low["n_allowed"] == 6).all() and (low.loc[low["strategy"] != "postfilter", "frac_short"] == 0).all()
    post1 = frame[(frame["strategy"] == "postfilter") & (frame["overfetch"] == 1) & (frame["selectivity"] == 0.5)]
    assert (post1["frac_short"] > 0.5).all() and (post1["recall"] < 0.8).all()
    assert {"p50_ms", "p95_ms", "qps", "select_ms", "recall_ids", "mean_results"} <= set(frame.columns)
    write_results(frame, tmp_path / "filtered.parquet")
    pd.testing.assert_frame_equal(read_results(tmp_path / "filtered.parquet"), frame)


def test_sweep_rejects_bad_input(vectors, meta):
    base, queries = vectors
    with pytest.raises(DatasetError, match="has 10 rows but the base has 600 vectors"):
        filtered_sweep(base, queries, "cosine", Metadata.synthetic(10), [], progress=False)
    with pytest.raises(QueryError, match="unknown strategy 'inside'"):
        filtered_sweep(base, queries, "cosine", meta, [], strategies=("inside",), progress=False)


def test_one_ivf_list_rule_for_both_default_sweeps():
    assert [ivf_lists(n) for n in (100, 4000, 20_000, 46_000, 50_000, 10**7)] == [8, 64, 128, 256, 256, 1024]
    for n in (4000, 20_000, 46_000):
        ivf = f"faiss:IVF{ivf_lists(n)},Flat"
        assert any(s.label == ivf for s in default_specs(n, 64, sweep="filtered"))
        assert any(s.label == ivf for s in default_specs(n, 64))
    assert [s.text for s in default_specs(20_000, 64, sweep="filtered")] == [
        "faiss:Flat", "faiss:HNSW32,Flat?efSearch=64", "faiss:IVF128,Flat?nprobe=16",
        "hnswlib:M=16,ef_construction=200?ef=64"]


def test_runner_logs_each_row_and_the_report_to_a_real_store(tmp_path):
    from workbench.runners.filtered import run_filtered, tracking_sink
    from workbench.tracking.experiments import FILTERED_SEARCH
    from workbench.tracking.query import runs_frame
    from workbench.tracking.store import Store

    rng = np.random.default_rng(1)
    data = BenchSet.from_vectors("tiny", rng.standard_normal((300, 8)), rng.standard_normal((5, 8)), "ip",
                                 gt_cache=False, progress=False)
    store = Store.in_folder(tmp_path / "store")
    result = run_filtered(data, tmp_path / "out", specs=["faiss:Flat", "exact"], k=5, selectivities=(0.1,),
                          overfetch=(2,), sink=tracking_sink(store), progress=False)
    frame, summary = result.frame, result.summary
    assert len(frame) == 3 and summary["specs"] == ["faiss:Flat"]   # the exact subset is always there, once
    assert summary["fastest_at_recall_0.9"] == recommend(frame).to_dict("records")
    assert set(result.figures) == {"recall", "latency"} and all(p.stat().st_size for p in result.figures.values())
    runs = runs_frame(store, FILTERED_SEARCH)
    children = runs[runs["tags.kind"] == "filtered-search"].set_index("run_name")
    assert len(children) == 3 and len(runs) == 4      # three rows under one parent sweep
    exact = children.loc["filtered exact subset s=0.1"]
    assert exact["metrics.recall"] == 1.0 and exact["params.strategy"] == "exact_subset"
    assert children.loc["filtered faiss:Flat postfilter x2 s=0.1", "params.overfetch"] == "2"
    assert exact["tags.mlflow.parentRunId"] == runs.loc[runs["run_name"] == "filtered tiny", "run_id"].iloc[0]


def test_cli_writes_results_and_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # ground truth of DATA is cached
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, base=rng.standard_normal((400, 8)).astype(np.float32),
             queries=rng.standard_normal((6, 8)).astype(np.float32))
    out = tmp_path / "out"
    rc = main(["filtered", str(data), "--out", str(out), "--json", "--k", "5", "--index", "faiss:Flat",
               "--index", "hnswlib:M=8,ef_construction=40?ef=32", "--selectivity", "0.01,0.2",
               "--overfetch", "2", "--no-track"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    frame = pd.read_parquet(out / "filtered.parquet")
    assert len(frame) == payload["rows"] == 2 * (1 + 2 * 2)
    for name in ("filtered_recall.png", "filtered_latency.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert payload["recall"]["exact subset"]["20%"] == 1.0


@pytest.mark.parametrize("argv, message", [
    (["--selectivity", "0.5,2"], "argument --selectivity: expected comma-separated fractions in (0, 1], got '0.5,2'"),
    (["--overfetch", "0"], "argument --overfetch: expected comma-separated positive integers, got '0'"),
    (["--queries", "0"], "argument --queries: must be a positive integer (1 or more), got 0"),
    (["--index", "faiss:IVF8,Flat?nprobe=2.5"], "nprobe: '2.5' is not an integer"),
])
def test_cli_bad_input_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "tiny.npz"
    np.savez(data, base=np.ones((50, 4), np.float32), queries=np.ones((2, 4), np.float32))
    rc = main(["filtered", str(data), "--out", str(tmp_path / "o"), "--no-track", *argv])
    assert rc == 2
    assert message in capsys.readouterr().err
