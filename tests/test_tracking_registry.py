"""The model registry: a run's retrieval bundle registered as a pyfunc, loaded in a fresh process by alias."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tracking_support import subprocess_env, unit_vectors, use_store

from workbench.cli import main
from workbench.errors import TrackingError
from workbench.tracking import (
    log_run,
    predict_in_fresh_process,
    register_retrieval_model,
    set_alias,
    write_retrieval_bundle,
)
from workbench.tracking.bundle import load_bundle
from workbench.tracking.store import Store, client

DATASET = {"name": "toy", "digest": "cd" * 32, "source": "synthetic"}
N, DIM, K = 300, 16, 5

LOAD_AND_SEARCH = """
import json, sys
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
queries = np.load(sys.argv[2])
out = model.predict(pd.DataFrame({"vector": list(queries)}), params={"k": int(sys.argv[3])})
print(json.dumps({"ids": out["ids"].tolist(), "scores": out["scores"].tolist()}))
"""


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return use_store(monkeypatch, tmp_path)


def _flat_run(store: Store, tmp_path, name: str = "flat", factory: str = "Flat") -> tuple[str, np.ndarray]:
    """A run whose artifact is a bundle of a plain faiss index over N random unit vectors."""
    import faiss

    base = unit_vectors(N, DIM)
    index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
    index.add(base)
    bundle = write_retrieval_bundle(tmp_path / name, index, [f"doc{i}" for i in range(N)], metric="cosine",
                                    embedding_model=None, dataset=DATASET, k=K)
    run_id = log_run(store, "index-benchmarks", name, params={"factory": factory}, metrics={"recall": 1.0, "qps": 900},
                     artifacts=[bundle], dataset=DATASET, command="workbench ann")
    return run_id, base


def _search_in_fresh_process(model_uri: str, queries: np.ndarray, k: int, tmp_path) -> dict:
    path = tmp_path / "queries.npy"
    np.save(path, queries)
    done = subprocess.run([sys.executable, "-c", LOAD_AND_SEARCH, model_uri, str(path), str(k)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> list[list[str]]:
    sims = queries @ base.T
    return [[f"doc{j}" for j in np.argsort(-row, kind="stable")[:k]] for row in sims]


def test_registered_model_loads_by_alias_in_a_fresh_process(store, tmp_path):
    run_id, base = _flat_run(store, tmp_path)
    version = register_retrieval_model(store, run_id, "toy-retriever", alias="champion")
    assert version.version == "1" and version.source_run_id == run_id
    queries = unit_vectors(7, DIM, seed=1)
    out = _search_in_fresh_process("models:/toy-retriever@champion", queries, 4, tmp_path)
    assert out["ids"] == _brute_force(base, queries, 4)
    assert np.allclose(out["scores"], np.sort(queries @ base.T, axis=1)[:, ::-1][:, :4], atol=1e-5)


def test_model_version_carries_lineage_and_a_model_card(store, tmp_path):
    run_id, _ = _flat_run(store, tmp_path)
    register_retrieval_model(store, run_id, "toy-retriever", alias="champion")
    c = client(store.uri)
    mv = c.get_model_version_by_alias("toy-retriever", "champion")
    assert mv.run_id == run_id
    assert mv.tags["workbench.source_run_id"] == run_id
    assert mv.tags["workbench.dataset.digest"] == DATASET["digest"]
    assert mv.tags["workbench.index.sha256"] == load_bundle(tmp_path / "flat" / "retrieval_index").config[
        "index_sha256"]
    assert "workbench.git.commit" in mv.tags and "embedding_model" in " ".join(mv.tags)
    cards = [a.path for a in c.list_artifacts(run_id, "model_card")]
    assert cards == ["model_card/model_card.md"]
    card = (tmp_path / "card").with_suffix(".md")
    card.write_text(open(c.download_artifacts(run_id, "model_card/model_card.md", str(tmp_path))).read())
    text = card.read_text()
    assert "# Model card: toy-retriever" in text and DATASET["digest"] in text and "| recall | 1 |" in text


def test_aliases_move_between_versions(store, tmp_path):
    first, _ = _flat_run(store, tmp_path, "flat")
    second, _ = _flat_run(store, tmp_path, "hnsw", factory="HNSW16,Flat")
    register_retrieval_model(store, first, "toy-retriever", alias="champion")
    register_retrieval_model(store, second, "toy-retriever", alias="challenger")
    c = client(store.uri)
    assert c.get_model_version_by_alias("toy-retriever", "challenger").run_id == second
    set_alias(store, "toy-retriever", "champion", 2)  # promote the challenger: the alias moves, no new version
    assert str(c.get_model_version_by_alias("toy-retriever", "champion").version) == "2"
    assert [str(v.version) for v in c.search_model_versions("name='toy-retriever'")] == ["2", "1"]
    with pytest.raises(TrackingError, match="alias 'v2'"):
        set_alias(store, "toy-retriever", "v2", 1)


@pytest.mark.parametrize("module, make, query_params", [
    ("workbench.index.faiss", lambda m: m.FaissIndex("HNSW16,Flat", metric="cosine"), {"efSearch": 128}),
    ("workbench.index.hnswlib", lambda m: m.HnswlibIndex(M=16, metric="cosine"), {"ef": 128}),
], ids=["faiss", "hnswlib"])
def test_vector_index_bundle_registers_and_searches(store, tmp_path, module, make, query_params):
    index = make(pytest.importorskip(module))
    base = unit_vectors(N, DIM)
    index.build(base)
    bundle = write_retrieval_bundle(tmp_path, index, [f"doc{i}" for i in range(N)], metric="cosine",
                                    embedding_model=None, query_params=query_params)
    run_id = log_run(store, "index-benchmarks", index.label, artifacts=[bundle])
    assert load_bundle(bundle).config["index_class"] == f"{module}:{type(index).__name__}"
    version = register_retrieval_model(store, run_id, "hnsw-retriever", alias="champion")
    queries = unit_vectors(5, DIM, seed=2)
    out = _search_in_fresh_process(version.model_uri, queries, 3, tmp_path)
    assert out["ids"] == _brute_force(base, queries, 3)  # ef=128 over 300 points is exact here


def test_registering_an_unknown_run_is_a_clear_error(store, capsys):
    with pytest.raises(TrackingError, match="no run 'deadbeef' in sqlite:///"):
        register_retrieval_model(store, "deadbeef", "toy-retriever")
    assert main(["register", "deadbeef", "--name", "toy-retriever", "--alias", "champion"]) == 2
    assert "error: no run 'deadbeef'" in capsys.readouterr().err


def test_registering_a_run_without_an_index_names_what_is_missing(store):
    run_id = log_run(store, "hybrid", "bm25 only", metrics={"ndcg@10": 0.4})
    with pytest.raises(TrackingError, match=f"run {run_id} \\(bm25 only\\) has no 'retrieval_index' artifact"):
        register_retrieval_model(store, run_id, "toy-retriever")


def test_cli_register_with_alias(store, tmp_path, capsys):
    run_id, _ = _flat_run(store, tmp_path)
    assert main(["register", run_id, "--name", "cli-retriever", "--alias", "challenger", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "1" and out["load_uri"] == "models:/cli-retriever@challenger"
    assert client(store.uri).get_model_version_by_alias("cli-retriever", "challenger").run_id == run_id


def test_bundle_rejects_a_changed_index_file(tmp_path):
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(unit_vectors(10, DIM))
    bundle = write_retrieval_bundle(tmp_path, index, [str(i) for i in range(10)], metric="ip", embedding_model=None)
    with pytest.raises(Exception, match="9 document ids for an index of 10 vectors"):
        write_retrieval_bundle(tmp_path / "b", index, [str(i) for i in range(9)], metric="ip", embedding_model=None)
    (bundle / "index.bin").write_bytes((bundle / "index.bin").read_bytes()[:-8])
    with pytest.raises(Exception, match="does not match the bundle"):
        load_bundle(bundle)


@pytest.mark.slow
def test_text_queries_are_embedded_with_the_bundles_model(store, tmp_path):
    """A `query` text column goes through workbench.embed.Embedder (the real MiniLM model)."""
    import faiss

    from workbench.embed import Embedder

    docs = ["the boundary layer on a flat plate", "supersonic flow over a wedge", "heat transfer in pipes",
            "stress in thin shells", "wing flutter at high speed"]
    emb = Embedder(normalize=True, show_progress=False)
    index = faiss.IndexFlatIP(emb.dim)
    index.add(emb.encode(docs))
    bundle = write_retrieval_bundle(tmp_path, index, [f"d{i}" for i in range(len(docs))], metric="cosine",
                                    embedding_model=emb.model_id, k=2)
    run_id = log_run(store, "hybrid", "dense", artifacts=[bundle])
    register_retrieval_model(store, run_id, "text-retriever", alias="champion")
    # the fresh process is told the store's URI; nothing reaches it through the environment
    out = predict_in_fresh_process(Store(store.uri, store.outbox), "models:/text-retriever@champion",
                                   ["flow past a wedge at mach 2", "shell stresses"], k=2)
    assert [row[0] for row in out["ids"]] == ["d1", "d3"] and all(len(row) == 2 for row in out["ids"])
    assert out["seconds"] > 0
