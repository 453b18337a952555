"""Filtered search: predicates against pandas, strategies against numpy brute force, the sweep and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from workbench.bench.filtered import (
    EmptySelectionError,
    FilterTarget,
    IndexUnderTest,
    Metadata,
    PredicateError,
    exact_subset,
    filtered_recall,
    filtered_sweep,
    postfilter,
    prefilter,
    write_parquet,
)
from workbench.bench.sinks import CollectingSink
from workbench.cli import main
from workbench.errors import WorkbenchError

N, DIM, K = 600, 16, 10


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((N, DIM)).astype(np.float32), rng.standard_normal((12, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def meta() -> Metadata:
    return Metadata.synthetic(N, seed=3)


def brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int, allowed: np.ndarray):
    """Independent reference: score everything, mask disallowed ids, full argsort."""
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        key = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        score = key
    else:
        score = q @ b.T
        key = -score
    mask = np.zeros(len(base), dtype=bool)
    mask[allowed] = True
    key = np.where(mask[None, :], key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    ids = np.where(np.take_along_axis(key, order, 1) < np.inf, order, -1)
    return np.take_along_axis(score, order, 1), ids


# ------------------------------------------------------------------------------ exact subset

@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("n_allowed", [3, 10, 57, N])
def test_exact_subset_equals_numpy_brute_force(vectors, metric, n_allowed):
    base, queries = vectors
    allowed = np.sort(np.random.default_rng(n_allowed).choice(N, n_allowed, replace=False))
    d, ids = exact_subset(FilterTarget(base, metric), queries, K, allowed)
    ref_d, ref_ids = brute_force(base, queries, metric, K, allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    valid = ref_ids >= 0
    np.testing.assert_allclose(d[valid], ref_d[valid], rtol=1e-4, atol=1e-4)
    assert (d[~valid] == (np.inf if metric == "l2" else -np.inf)).all()


def test_exact_subset_breaks_ties_by_id():
    base = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    _, ids = exact_subset(FilterTarget(base, "ip"), np.array([[1, 0]], np.float32), 2, np.array([0, 1, 2, 3]))
    assert ids.tolist() == [[0, 1]]


# ------------------------------------------------------------------------------ strategies on indexes

def test_prefilter_with_flat_equals_exact_subset(vectors, meta):
    from workbench.index.faiss import FaissIndex

    base, queries = vectors
    index = FaissIndex("Flat", metric="cosine")
    index.build(base)
    target = FilterTarget(base, "cosine", index)
    for predicate in ["u < 0.01", "u < 0.2", "category = 'c00' AND year >= 2000"]:
        allowed = meta.select(predicate)
        d, ids = prefilter(target, queries, K, allowed)
        ref_d, ref_ids = exact_subset(target, queries, K, allowed)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overfetch", [1, 2, 10])
@pytest.mark.parametrize("selectivity", [0.005, 0.05, 0.5])
def test_postfilter_only_returns_allowed_ids_of_the_overfetched_list(vectors, meta, overfetch, selectivity):
    from workbench.index.faiss import FaissIndex

    base, queries = vectors
    index = FaissIndex("Flat", metric="l2")
    index.build(base)
    target = FilterTarget(base, "l2", index)
    allowed = meta.select(f"u < {selectivity}")
    _, ids = postfilter(target, queries, K, allowed, overfetch=overfetch)
    returned = ids[ids >= 0]
    assert np.isin(returned, allowed).all()
    # with an exact index, post-filtering keeps exactly the allowed ids among the top k * overfetch, in order
    _, fetched = brute_force(base, queries, "l2", K * overfetch, np.arange(N))
    for row, top in zip(ids, fetched):
        expected = top[np.isin(top, allowed)][:K]
        assert row[: expected.size].tolist() == expected.tolist()
        assert (row[expected.size:] == -1).all()


def test_postfilter_collapses_at_low_selectivity(vectors, meta):
    from workbench.index.faiss import FaissIndex

    base, queries = vectors
    index = FaissIndex("Flat", metric="cosine")
    index.build(base)
    target = FilterTarget(base, "cosine", index)
    allowed = meta.select("u < 0.05")  # 30 of 600 ids: about K * 0.05 survive an over-fetch of 1
    _, post = postfilter(target, queries, K, allowed, overfetch=1)
    _, pre = prefilter(target, queries, K, allowed)
    assert ((post >= 0).sum(axis=1) < K).all()
    assert ((pre >= 0).sum(axis=1) == K).all()


@pytest.mark.parametrize("predicate", ["u < 0.01", "u < 0.1", "category IN ('c01', 'c02') OR year < 1993"])
def test_hnswlib_prefilter_honours_the_predicate(vectors, meta, predicate):
    from workbench.index.hnswlib import HnswlibIndex

    base, queries = vectors
    index = HnswlibIndex(M=8, ef_construction=100, metric="cosine")
    index.build(base)
    target = FilterTarget(base, "cosine", index)
    allowed = meta.select(predicate)
    d, ids = prefilter(target, queries, K, allowed, ef=200)
    assert np.isin(ids[ids >= 0], allowed).all()
    assert ((ids >= 0).sum(axis=1) == min(K, allowed.size)).all()
    recall, _ = filtered_recall(target, queries, ids, exact_subset(target, queries, K, allowed), allowed, K)
    assert recall.mean() >= 0.95  # ef=200 on 600 vectors: near exact


@pytest.mark.parametrize("factory,params", [("HNSW16,Flat", {"efSearch": 16}), ("IVF8,Flat", {"nprobe": 2})])
def test_faiss_prefilter_never_returns_a_disallowed_id(vectors, meta, factory, params):
    from workbench.index.faiss import FaissIndex

    base, queries = vectors
    index = FaissIndex(factory, metric="ip")
    index.build(base)
    allowed = meta.select("u < 0.03")
    _, ids = prefilter(FilterTarget(base, "ip", index), queries, K, allowed, **params)
    assert np.isin(ids[ids >= 0], allowed).all()


def test_allowed_ids_must_be_sorted_unique_and_in_range(vectors):
    base, queries = vectors
    target = FilterTarget(base, "ip")
    with pytest.raises(WorkbenchError, match="sorted and unique: 5 then 3 at 1"):
        exact_subset(target, queries, K, np.array([1, 5, 3]))
    with pytest.raises(WorkbenchError, match=r"span 0..600 but the index holds ids 0..599"):
        exact_subset(target, queries, K, np.array([0, 600]))
    with pytest.raises(EmptySelectionError):
        exact_subset(target, queries, K, np.array([], dtype=np.int64))


def test_strategies_need_an_index(vectors, meta):
    base, queries = vectors
    with pytest.raises(WorkbenchError, match="needs an index"):
        postfilter(FilterTarget(base, "ip"), queries, K, meta.select("u < 0.5"))


# ------------------------------------------------------------------------------ recall

def test_filtered_recall_counts_ties_and_rejects_duplicates():
    base = np.array([[1.0, 0], [1.0, 0], [0.6, 0.8], [0, 1.0]], dtype=np.float32)
    target = FilterTarget(base, "ip")
    q = np.array([[1.0, 0]], np.float32)
    allowed = np.array([0, 1, 2, 3])
    truth = exact_subset(target, q, 1, allowed)
    # id 1 ties with the true top-1 (id 0): tie-aware recall counts it, id overlap does not
    recall, overlap = filtered_recall(target, q, np.array([[1]]), truth, allowed, 1)
    assert recall.tolist() == [1.0] and overlap.tolist() == [0.0]
    # a selection smaller than k: the denominator is the selection's size
    small = np.array([2, 3])
    truth = exact_subset(target, q, 4, small)
    recall, _ = filtered_recall(target, q, np.array([[2, -1, -1, -1]]), truth, small, 4)
    assert recall.tolist() == [0.5]
    # a disallowed id never counts, even when it is the closest
    recall, _ = filtered_recall(target, q, np.array([[0, 2, 3, -1]]), truth, small, 4)
    assert recall.tolist() == [1.0]
    with pytest.raises(WorkbenchError, match="query 0: result repeats id 2"):
        filtered_recall(target, q, np.array([[2, 2, -1, -1]]), truth, small, 4)


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


# ------------------------------------------------------------------------------ the sweep and its CLI

def test_sweep_rows_sink_and_parquet(vectors, meta, tmp_path):
    from workbench.index.faiss import FaissIndex
    from workbench.index.hnswlib import HnswlibIndex

    base, queries = vectors
    flat = FaissIndex("Flat", metric="cosine")
    flat.build(base)
    hnsw = HnswlibIndex(M=8, ef_construction=50, metric="cosine")
    hnsw.build(base)
    sink = CollectingSink()
    frame = filtered_sweep(base, queries, "cosine", meta,
                           [IndexUnderTest(flat.label, flat), IndexUnderTest(hnsw.label, hnsw, {"ef": 64})],
                           k=K, selectivities=(0.01, 0.5), overfetch=(1, 10), runs=1, dataset="tiny", sink=sink,
                           progress=False)
    rows = sink.points
    # per selectivity: exact + 2 indexes x (prefilter + 2 post-filters)
    assert len(frame) == len(rows) == 2 * (1 + 2 * 3)
    assert rows[0]["strategy"] == "exact_subset"
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
    path = write_parquet(frame, tmp_path / "filtered.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_sweep_rejects_mismatched_metadata(vectors):
    base, queries = vectors
    with pytest.raises(WorkbenchError, match="has 10 rows but the base has 600 vectors"):
        filtered_sweep(base, queries, "cosine", Metadata.synthetic(10), [], progress=False)


def test_cli_writes_results_and_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # ground truth of DATA is cached
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, base=rng.standard_normal((400, 8)).astype(np.float32),
             queries=rng.standard_normal((6, 8)).astype(np.float32))
    out = tmp_path / "out"
    rc = main(["filtered", str(data), "--out", str(out), "--json", "--k", "5", "--index", "faiss:Flat",
                "--index", "hnswlib:M=8,ef_construction=40?ef=32", "--selectivity", "0.01,0.2",
                "--overfetch", "2", "--no-tracking"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    frame = pd.read_parquet(out / "filtered.parquet")
    assert len(frame) == payload["rows"] == 2 * (1 + 2 * 2)
    for name in ("filtered_recall.png", "filtered_latency.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert payload["recall"]["exact subset"]["20%"] == 1.0


def test_cli_bad_selectivity_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "tiny.npz"
    np.savez(data, base=np.ones((50, 4), np.float32), queries=np.ones((2, 4), np.float32))
    rc = main(["filtered", str(data), "--out", str(tmp_path / "o"), "--selectivity", "0.5,2"])
    assert rc == 2
    assert "selectivity must be in (0, 1], got 2.0" in capsys.readouterr().err


def test_run_filtered_logs_each_row_through_tracking(tmp_path, monkeypatch):
    import workbench.tracking as tracking
    from workbench.bench.filtered import recommend, run_filtered

    calls: list[dict] = []
    monkeypatch.setattr(tracking, "log_run", lambda **kw: calls.append(kw))
    rng = np.random.default_rng(1)
    base, queries = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    frame, summary = run_filtered(base, queries, "ip", tmp_path, specs=["faiss:Flat"], k=5, selectivities=(0.1,),
                                  overfetch=(2,), dataset={"name": "tiny", "digest": "abc", "source": "test"},
                                  progress=False)
    assert len(calls) == len(frame) == 3  # children of one parent run in the (test) store
    assert {c["experiment"] for c in calls} == {"index-benchmarks"}
    assert calls[0]["metrics"]["recall"] == 1.0 and calls[0]["params"]["strategy"] == "exact_subset"
    assert calls[2]["params"]["overfetch"] == 2 and calls[2]["dataset"]["digest"] == "abc"
    assert summary["fastest_at_recall_0.9"] == recommend(frame).to_dict("records")
    assert recommend(frame)["recall"].min() >= 0.9
