"""Evaluation through pytrec_eval: missing queries count as zero, ties cannot reorder a run, TREC files
round-trip, significance and cross-validation behave."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.errors import MetricError, RunError
from workbench.hybrid.evaluate import evaluate, per_query
from workbench.hybrid.runs import Run, read_trec, strictly_decreasing, write_trec
from workbench.hybrid.significance import compare, win_tie_loss
from workbench.hybrid.tuning import Candidate, cross_validate, kfold

DOCS = ["a", "b", "c", "d", "e"]
QRELS = {"q1": {"b": 1}, "q2": {"a": 2, "c": 1}, "q3": {"e": 1}}


def test_missing_judged_query_counts_as_zero() -> None:
    run = Run.from_dict("r", {"q1": {"b": 2.0, "a": 1.0}, "q2": {"a": 1.0}}, DOCS, ["q1", "q2"])
    table = per_query(run, QRELS, ["ndcg@10", "mrr@10", "recall@100"])
    assert list(table.index) == ["q1", "q2", "q3"]
    assert table.loc["q1", "mrr@10"] == 1.0 and table.loc["q3"].sum() == 0.0
    assert evaluate(run, QRELS, ["mrr@10"])["mrr@10"] == pytest.approx(2 / 3)  # not 1.0 over two queries


def test_ndcg_by_hand() -> None:
    run = Run.from_dict("r", {"q2": {"c": 3.0, "a": 2.0}}, DOCS, ["q2"])
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_query(run, QRELS, ["ndcg@10"]).loc["q2", "ndcg@10"] == pytest.approx(dcg / idcg)


def test_ties_keep_the_run_order() -> None:
    # Equal scores: trec_eval alone would rank "e" before "a" (ties broken by descending doc id).
    run = Run("r", ["q3"], np.array([[0, 4]]), np.array([[1.0, 1.0]]), DOCS)
    assert per_query(run, QRELS, ["mrr@10"]).loc["q3", "mrr@10"] == 0.5
    s = strictly_decreasing(np.array([[1.0, 1.0, 1.0, 0.5, np.nan]]))
    assert (np.diff(s[0, :4]) < 0).all() and np.isnan(s[0, 4]) and s[0, 3] == 0.5


def test_mrr_cutoff() -> None:
    ranked = {d: 10.0 - i for i, d in enumerate(["a", "c", "d", "e"])}
    run = Run.from_dict("r", {"q1": {**ranked, "b": 0.5}}, DOCS, ["q1"])
    t = per_query(run, {"q1": {"b": 1}}, ["mrr@3", "mrr@10"])
    assert t.loc["q1", "mrr@3"] == 0.0 and t.loc["q1", "mrr@10"] == pytest.approx(1 / 5)


def test_unknown_metric() -> None:
    run = Run.from_dict("r", {"q1": {"b": 1.0}}, DOCS, ["q1"])
    with pytest.raises(MetricError, match="unknown metric 'bpref@5'"):
        evaluate(run, QRELS, ["bpref@5"])


def test_trec_round_trip_and_ties(tmp_path) -> None:
    run = Run("rrf", ["q1", "q2"], np.array([[1, 0, 2], [3, -1, -1]]),
              np.array([[0.5, 0.5, 0.25], [1.0, np.nan, np.nan]]), DOCS)
    path = write_trec(run, tmp_path / "r.trec")
    lines = path.read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "b", "1"] and len(lines) == 4
    back = read_trec(path, DOCS, query_ids=["q1", "q2", "q3"])
    assert back.query_ids == ["q1", "q2", "q3"] and back.lengths().tolist() == [3, 1, 0]
    np.testing.assert_array_equal(back.doc_ids[:2], run.doc_ids)
    assert back.scores[0, 0] > back.scores[0, 1]  # written strictly decreasing


def test_read_trec_bad_input(tmp_path) -> None:
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 zz 2 1.0 t\n")
    with pytest.raises(RunError, match=r"bad.trec:2: query 'q1': document 'zz' is not in the corpus"):
        read_trec(bad, DOCS)
    bad.write_text("q1 Q0 a 1 nan t\n")
    with pytest.raises(RunError, match=r"bad.trec:1: .*score is nan"):
        read_trec(bad, DOCS)
    bad.write_text("q1 Q0 a 1 2.0\n")
    with pytest.raises(RunError, match=r"bad.trec:1: expected 6 columns"):
        read_trec(bad, DOCS)
    bad.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n")
    with pytest.raises(RunError, match=r"bad.trec:2: .*already on line 1"):
        read_trec(bad, DOCS)


def test_significance_against_scipy_and_counts() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.random(40)
    b = a - 0.1 + rng.normal(0, 0.05, 40)
    b[:3] = a[:3]
    c = compare(a, b)
    assert (c.wins, c.ties, c.losses) == win_tie_loss(a, b) and c.ties == 3
    assert c.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert c.p_randomization < 0.01
    same = compare(a, a)
    assert same.p_randomization == 1.0 and same.p_ttest == 1.0 and same.ties == 40
    noise = compare(a, a + rng.normal(0, 0.01, 40))
    assert noise.p_randomization > 0.05


def test_kfold_partitions() -> None:
    folds = kfold(11, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(11)) and {len(f) for f in folds} == {3, 4}
    with pytest.raises(Exception, match="2 <= folds <= queries"):
        kfold(3, 5)


def test_cross_validation_is_held_out() -> None:
    """A candidate that wins only on the held-out fold's queries is never chosen for that fold."""
    qrels = {f"q{i}": {"a": 1} for i in range(4)}
    qids = list(qrels)
    good = Run.from_dict("good", {q: {"a": 1.0} for q in qids}, DOCS, qids)
    bad = Run.from_dict("bad", {q: {"b": 1.0} for q in qids}, DOCS, qids)
    # "mixed" is right on q0 only; "other" right on q1..q3.
    mixed = Run.from_dict("m", {q: ({"a": 1.0} if q == "q0" else {"b": 1.0}) for q in qids}, DOCS, qids)
    other = Run.from_dict("o", {q: ({"b": 1.0} if q == "q0" else {"a": 1.0}) for q in qids}, DOCS, qids)
    res = cross_validate([Candidate("x", {"i": 0}, mixed), Candidate("x", {"i": 1}, other)], qrels, folds=4)
    # Leaving q0 out, "other" wins training; q0 then gets "other" (wrong): held-out 3/4, not in-sample 1.0.
    assert evaluate(res.run, qrels, ["mrr@10"])["mrr@10"] == pytest.approx(0.75)
    assert [c["params"]["i"] for c in res.chosen].count(1) >= 3
    assert evaluate(cross_validate([Candidate("x", {}, good), Candidate("x", {}, bad)], qrels, 2).run,
                    qrels, ["mrr@10"])["mrr@10"] == 1.0
