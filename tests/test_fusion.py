"""Fusion: hand-computed small cases, the same ranking as ranx on random runs, and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from workbench.errors import RunError
from workbench.hybrid.fusion import fuse, minmax, tmm, zscore
from workbench.hybrid.runs import Run

DOCS = [f"d{i}" for i in range(6)]


def run_of(name: str, rows: list[list[tuple[str, float]]], min_score: float | None = 0.0) -> Run:
    return Run.from_dict(name, {f"q{i}": dict(r) for i, r in enumerate(rows)}, DOCS,
                         query_ids=[f"q{i}" for i in range(len(rows))], min_score=min_score)


A = run_of("a", [[("d0", 3.0), ("d1", 2.0), ("d2", 1.0)]])
B = run_of("b", [[("d2", 0.9), ("d3", 0.5)]], min_score=-1.0)


def ranking(run: Run, row: int = 0) -> list[tuple[str, float]]:
    return [(run.docs[d], s) for d, s in zip(run.doc_ids[row], run.scores[row]) if d >= 0]


def test_rrf_by_hand() -> None:
    got = dict(ranking(fuse([A, B], "rrf", k=60)))
    assert got == pytest.approx({"d0": 1 / 61, "d1": 1 / 62, "d2": 1 / 63 + 1 / 61, "d3": 1 / 62})
    assert [d for d, _ in ranking(fuse([A, B], "rrf", k=60))] == ["d2", "d0", "d1", "d3"]  # d1/d3 tie: corpus order


def test_convex_minmax_by_hand() -> None:
    # A -> d0 1, d1 .5, d2 0;  B -> d2 1, d3 0; missing documents get the list minimum, 0.
    got = dict(ranking(fuse([A, B], "convex", norm="minmax", weights=[0.3, 0.7])))
    assert got == pytest.approx({"d0": 0.3, "d1": 0.15, "d2": 0.7, "d3": 0.0})


def test_convex_zscore_missing_rules_by_hand() -> None:
    za = (np.array([3.0, 2, 1]) - 2) / np.sqrt(2 / 3)  # population std
    zb = np.array([1.0, -1.0])
    got_min = dict(ranking(fuse([A, B], "convex", norm="zscore", weights=[0.5, 0.5], missing="min")))
    assert got_min["d0"] == pytest.approx(0.5 * za[0] + 0.5 * zb.min())
    assert got_min["d3"] == pytest.approx(0.5 * za.min() + 0.5 * zb[1])
    got_zero = dict(ranking(fuse([A, B], "convex", norm="zscore", weights=[0.5, 0.5], missing="zero")))
    assert got_zero["d0"] == pytest.approx(0.5 * za[0])
    assert got_zero["d2"] == pytest.approx(0.5 * za[2] + 0.5 * zb[0])


def test_convex_tmm_uses_theoretical_minimum() -> None:
    # A: lower 0 -> s / 3; B: lower -1 -> (s + 1) / 1.9
    got = dict(ranking(fuse([A, B], "convex", norm="tmm", weights=[0.5, 0.5])))
    assert got["d0"] == pytest.approx(0.5 * 1.0 + 0.5 * (1.5 / 1.9))  # missing from B: B's minimum
    assert got["d2"] == pytest.approx(0.5 * (1 / 3) + 0.5 * 1.0)


def test_combsum_combmnz_by_hand() -> None:
    s = dict(ranking(fuse([A, B], "combsum")))
    m = dict(ranking(fuse([A, B], "combmnz")))
    assert s == pytest.approx({"d0": 1.0, "d1": 0.5, "d2": 1.0, "d3": 0.0})
    assert m == pytest.approx({"d0": 1.0, "d1": 0.5, "d2": 2.0, "d3": 0.0})


def test_normalisations_keep_padding_and_handle_constant_lists() -> None:
    s = np.array([[2.0, 2.0, np.nan], [5.0, 1.0, 0.0]])
    assert np.isnan(minmax(s)[0, 2]) and (minmax(s)[0, :2] == 1).all()
    assert (zscore(s)[0, :2] == 0).all()
    np.testing.assert_allclose(tmm(s, 0.0)[1], [1.0, 0.2, 0.0])


def test_depth_and_empty_rows() -> None:
    empty = run_of("e", [[]])
    fused = fuse([A, empty], "rrf", depth=2)
    assert fused.depth == 2 and [d for d, _ in ranking(fused)] == ["d0", "d1"]
    none = fuse([empty, run_of("f", [[]])], "rrf")
    assert none.lengths().tolist() == [0]


# --- against ranx ---------------------------------------------------------------------------------

def random_runs(seed: int, n_q: int = 20, n_docs: int = 300, depth: int = 50) -> tuple[Run, Run]:
    rng = np.random.default_rng(seed)
    docs = [f"doc{i}" for i in range(n_docs)]
    out = []
    for name, lo in (("lex", 0.0), ("sem", -1.0)):
        res = {}
        for q in range(n_q):
            n = int(rng.integers(2, depth + 1))  # one-result lists: see the constant-list test
            ids = rng.choice(n_docs // 3 if name == "lex" else n_docs, size=min(n, n_docs // 3), replace=False)
            res[f"q{q}"] = {docs[i]: float(s) for i, s in zip(ids, rng.uniform(lo + 0.01, 30 if lo == 0 else 1, len(ids)))}
        out.append(Run.from_dict(name, res, docs, [f"q{q}" for q in range(n_q)], min_score=lo))
    return out[0], out[1]


def ranx_fused(runs: tuple[Run, Run], norm: str | None, method: str, params: dict) -> dict[str, dict[str, float]]:
    ranx = pytest.importorskip("ranx")
    # ranx.fuse normalises the runs it is given in place: hand it copies.
    rr = [ranx.Run.from_dict(copy.deepcopy(r.to_dict(strict=False)), name=r.name) for r in runs]
    return dict(ranx.fuse(runs=rr, norm=norm, method=method, params=params).to_dict())


def assert_same_ranking(ours: Run, theirs: dict[str, dict[str, float]]) -> None:
    for row, q in enumerate(ours.query_ids):
        got = ranking(ours, row)
        ref = theirs.get(q, {})
        assert {d for d, _ in got} == set(ref), q
        np.testing.assert_allclose([s for _, s in got], [ref[d] for d, _ in got], rtol=1e-9, atol=1e-12)
        # Our order is ranx's order: its scores, read in our order, never rise (ties within float noise
        # may be in either order; ours are broken by corpus position).
        assert (np.diff([ref[d] for d, _ in got]) <= 1e-12).all(), q


CASES = [
    ("rrf", {"k": 60}, None, "rrf", {"k": 60}),
    ("rrf", {"k": 5}, None, "rrf", {"k": 5}),
    ("convex", {"norm": "minmax", "weights": [0.3, 0.7]}, "min-max", "wsum", {"weights": [0.3, 0.7]}),
    ("convex", {"norm": "zscore", "weights": [0.6, 0.4], "missing": "zero"}, "zmuv", "wsum", {"weights": [0.6, 0.4]}),
    ("combsum", {}, "min-max", "sum", {}),
    ("combmnz", {}, "min-max", "mnz", {}),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method,params,rnorm,rmethod,rparams", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_same_ranking_as_ranx(seed: int, method: str, params: dict, rnorm: str | None, rmethod: str,
                              rparams: dict) -> None:
    runs = random_runs(seed)
    ours = fuse(list(runs), method, depth=1000, **params)
    assert_same_ranking(ours, ranx_fused(runs, rnorm, rmethod, rparams))


def test_tmm_on_bm25_equals_ranx_max_norm() -> None:
    """With a theoretical minimum of 0, theoretical-min-max is ranx's max normalisation."""
    lex, sem = random_runs(3)
    positive = {q: {d: abs(s) for d, s in r.items()} for q, r in sem.to_dict(strict=False).items()}
    sem0 = Run.from_dict("sem", positive, sem.docs, sem.query_ids, min_score=0.0)
    ours = fuse([lex, sem0], "convex", depth=1000, norm="tmm", weights=[0.5, 0.5], missing="zero")
    assert_same_ranking(ours, ranx_fused((lex, sem0), "max", "wsum", {"weights": [0.5, 0.5]}))


def test_ranx_inputs_not_mutated_by_our_fusion() -> None:
    lex, sem = random_runs(4)
    before = lex.scores.copy()
    fuse([lex, sem], "convex", norm="zscore")
    np.testing.assert_array_equal(before, lex.scores)


# --- bad input -------------------------------------------------------------------------------------

def test_unknown_method_and_norm() -> None:
    with pytest.raises(RunError, match="unknown fusion method 'borda'"):
        fuse([A, B], "borda")
    with pytest.raises(RunError, match="unknown normalisation 'l2'"):
        fuse([A, B], "convex", norm="l2")
    with pytest.raises(RunError, match="unknown missing-document rule"):
        fuse([A, B], "convex", missing="mean")


def test_mismatched_runs() -> None:
    other = Run.from_dict("o", {"qX": {"d0": 1.0}}, DOCS, ["qX"])
    with pytest.raises(RunError, match="different queries"):
        fuse([A, other], "rrf")
    smaller = Run.from_dict("s", {"q0": {"d0": 1.0}}, DOCS[:3], ["q0"])
    with pytest.raises(RunError, match="different corpora .6 and 3 documents"):
        fuse([A, smaller], "rrf")
    with pytest.raises(RunError, match="at least 2 runs"):
        fuse([A], "rrf")
    with pytest.raises(RunError, match="3 weights for 2 runs"):
        fuse([A, B], "convex", weights=[0.2, 0.3, 0.5])


def test_tmm_needs_theoretical_minimum() -> None:
    no_min = run_of("nomin", [[("d4", 1.0)]], min_score=None)
    with pytest.raises(RunError, match="theoretical-min-max .* 'nomin'|'nomin'.*theoretical"):
        fuse([A, no_min], "convex", norm="tmm")


def test_nan_score_and_unknown_document_rejected() -> None:
    with pytest.raises(RunError, match="NaN score for document 'd1'"):
        Run.from_dict("bad", {"q0": {"d0": 1.0, "d1": float("nan")}}, DOCS)
    with pytest.raises(RunError, match="document 'zz' is not in the corpus"):
        Run.from_dict("bad", {"q0": {"zz": 1.0}}, DOCS)
    with pytest.raises(RunError, match="score is nan"):
        Run("bad", ["q0"], np.array([[0, 1]]), np.array([[1.0, np.nan]]), DOCS)
    with pytest.raises(RunError, match="appears twice"):
        Run("bad", ["q0"], np.array([[0, 0]]), np.array([[1.0, 0.5]]), DOCS)
    with pytest.raises(RunError, match="sorted best first"):
        Run("bad", ["q0"], np.array([[0, 1]]), np.array([[1.0, 2.0]]), DOCS)
    with pytest.raises(RunError, match="outside the corpus of 6"):
        Run("bad", ["q0"], np.array([[7]]), np.array([[1.0]]), DOCS)
