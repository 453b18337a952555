"""`workbench hybrid` and `workbench hybrid-bench` through the CLI entry point, on a small synthetic
collection with a deterministic stand-in for the embedding model (no model load)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import topic_collection
from tracking_support import use_store

from workbench.cli import main
from workbench.hybrid.runs import read_trec
from workbench.runners.hybrid import run_hybrid
from workbench.tracking.query import runs_frame
from workbench.tracking.store import Store, client

TOPICS = ["wing flutter", "boundary layer", "heat transfer", "shock wave", "jet noise", "panel buckling"]


def fake_embed_dataset(ds, embedder=None):
    """Bag-of-words hashed into 64 dims and normalised: deterministic, related to the text."""
    def enc(texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w[:4].encode()).hexdigest(), 16) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return enc(ds.doc_texts()), enc(ds.query_texts())


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    return topic_collection(tmp_path / "mini", TOPICS, n_docs=120, filler_words=6, judged=8)


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workbench.embed.embed_dataset", fake_embed_dataset)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: None) -> Store:
    return use_store(monkeypatch, tmp_path / "tracking")


def test_hybrid_writes_metrics_runs_and_logs(collection: Path, tmp_path: Path, store: Store, capsys) -> None:
    out = tmp_path / "out"
    assert main(["hybrid", str(collection), "--out", str(out), "--folds", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(printed) == {"dataset", "n_queries", "methods", "best_single", "best_fused", "bundle", "backend",
                            "embedding_variant", "parent_run_id"}
    assert (printed["backend"], printed["embedding_variant"]) == ("torch", None)
    assert metrics["dataset"] == "mini" and metrics["n_queries"] == 6
    for name in ("bm25", "dense", "rrf", "convex"):
        assert set(metrics["methods"][name]) >= {"ndcg@10", "recall@100", "map", "mrr@10"}
        run = read_trec(out / "runs" / f"{name}.trec", [f"d{i}" for i in range(120)])
        assert run.query_ids and run.depth <= 100
    assert metrics["best_single"] in ("bm25", "dense") and metrics["best_fused"] not in ("bm25", "dense")
    assert len(metrics["cv_choices"]["convex"]) == 3
    assert (out / "comparison.md").read_text().startswith("# Hybrid retrieval on mini")
    runs = runs_frame(store, "hybrid")
    (parent,) = runs[runs["run_name"] == "hybrid mini"].to_dict("records")
    assert parent["params.folds"] == "3" and parent["tags.workbench.dataset.name"] == "mini"
    best_fused = metrics["methods"][metrics["best_fused"]]["ndcg@10"]
    assert parent["metrics.best_fused_ndcg_at_10"] == pytest.approx(best_fused)
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert set(children["run_name"]) == {f"mini:{m}" for m in metrics["methods"]}
    bm25 = children[children["run_name"] == "mini:bm25"].iloc[0]
    assert bm25["metrics.ndcg_at_10"] == pytest.approx(metrics["methods"]["bm25"]["ndcg@10"])
    c = client(store.uri)
    assert [a.path for a in c.list_artifacts(bm25["run_id"])] == ["bm25.trec"]
    assert {a.path for a in c.list_artifacts(parent["run_id"], "results")} >= {"results/metrics.json",
                                                                                "results/comparison.md"}
    assert not list(out.rglob(".*.tmp"))


def test_runs_hold_at_least_100_results_where_the_corpus_allows(collection: Path, tmp_path: Path,
                                                                fake_model: None) -> None:
    assert main(["hybrid", str(collection), "--out", str(tmp_path / "o"), "--folds", "2", "--no-track"]) == 0
    dense = read_trec(tmp_path / "o" / "runs" / "dense.trec", [f"d{i}" for i in range(120)])
    assert (dense.lengths() == 100).all()


def test_bad_dataset_and_folds_are_errors(collection: Path, tmp_path: Path, store: Store, capsys) -> None:
    assert main(["hybrid", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["hybrid", str(collection), "--out", str(tmp_path / "o"), "--folds", "50"]) == 2
    assert "2 <= folds <= queries, got 50 folds for 6 queries" in capsys.readouterr().err


def test_hybrid_bench_small(collection: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("ranx")
    assert main(["hybrid-bench", str(collection), "--queries", "20", "--candidates", "50", "--repeats", "1",
                 "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "hybrid.json").read_text())
    assert payload["bm25"][0]["dataset"] == "mini" and payload["bm25"][0]["bm25_index_and_retrieve_s"] > 0
    assert {r["method"] for r in payload["fusion"]["methods"]} == {"rrf", "convex_minmax", "convex_zscore",
                                                                  "combsum", "combmnz"}
    assert "ranx" in capsys.readouterr().out


def test_weight_slider_callback_and_figures(collection: Path, tmp_path: Path, fake_model: None) -> None:
    """The notebook's widget callback is a plain function: call it directly."""
    from workbench.hybrid.plots import (
        plot_per_query_differences,
        plot_weight_curves,
        weight_view,
        wins_losses,
    )

    res = {"mini": run_hybrid(collection, folds=2)}
    view = weight_view(res, 0.33, norm="minmax")
    curve = res["mini"].weight_curve
    expected = curve[(curve["norm"] == "minmax") & (curve["weight"] == 0.3)]["ndcg@10"].item()
    assert view.loc["mini", "weight"] == 0.3 and view.loc["mini", "convex ndcg@10"] == expected
    assert view.loc["mini", "vs best single"] == pytest.approx(
        expected - max(res["mini"].metrics["bm25"]["ndcg@10"], res["mini"].metrics["dense"]["ndcg@10"]))
    table = wins_losses(res)
    assert (table[["wins", "ties", "losses"]].sum(axis=1) == 6).all()
    plot_weight_curves(res, tmp_path / "w.png", mark=0.3)
    plot_per_query_differences(res, path=tmp_path / "d.png")
    assert (tmp_path / "w.png").stat().st_size > 0 and (tmp_path / "d.png").stat().st_size > 0


def test_backend_reaches_the_embedder_and_the_records(collection: Path, tmp_path: Path, store: Store,
                                                      capsys) -> None:
    out = tmp_path / "out"
    assert main(["hybrid", str(collection), "--out", str(out), "--folds", "2", "--backend", "onnx-int8",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["backend"] == "onnx-int8" and printed["embedding_variant"].startswith("onnx-int8-matmul-")
    dense = json.loads((out / "metrics.json").read_text())["dense"]
    assert (dense["backend"], dense["variant"]) == ("onnx-int8", printed["embedding_variant"])
    runs = runs_frame(store, "hybrid")
    (parent,) = runs[runs["run_name"] == "hybrid mini"].to_dict("records")
    assert parent["params.backend"] == "onnx-int8" and parent["params.embedding_variant"] == dense["variant"]
    assert main(["hybrid", str(collection), "--out", str(out), "--backend", "tensorrt"]) == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.mark.slow
def test_two_backends_never_mix_vectors(collection: Path, tmp_path: Path) -> None:
    """The real model in one cache: torch first, then int8; int8's dense run is int8's own vectors."""
    from workbench.data import load_dataset
    from workbench.embed import Embedder
    from workbench.hybrid.dense import DenseRetriever

    ds = load_dataset(str(collection))
    cache = tmp_path / "cache"
    torch_emb = Embedder(cache_dir=cache, show_progress=False)
    int8_emb = Embedder(cache_dir=cache, backend="onnx-int8", show_progress=False)
    by_torch = run_hybrid(ds, folds=2, embedder=torch_emb)
    by_int8 = run_hybrid(ds, folds=2, embedder=int8_emb)
    assert int8_emb.last_stats["cache_hits"] == 0                # the queries: none taken from torch's namespace
    fresh = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False)
    expected = DenseRetriever(fresh.encode(ds.doc_texts()), ds.doc_ids).retrieve_vectors(
        fresh.encode(ds.query_texts()), 100, ds.query_ids)
    np.testing.assert_allclose(by_int8.runs["dense"].scores, expected.scores, atol=1e-5)
    assert not np.allclose(by_int8.runs["dense"].scores, by_torch.runs["dense"].scores, atol=1e-5, equal_nan=True)
    assert by_int8.payload["dense"]["variant"] != by_torch.payload["dense"]["variant"]
