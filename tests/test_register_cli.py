"""From the command line to a served model: `workbench hybrid` and `workbench ann --keep` log a retrieval
bundle on their parent run, `workbench register` ships it, and a fresh process loads it by alias.

The hybrid test uses medline (1033 documents, 30 judged queries, cached embeddings): the registered model's
predictions, evaluated with pytrec_eval, must give the nDCG@10 the run logged for the shipped configuration.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tracking_support import subprocess_env, use_store

from workbench.cli import main
from workbench.data import load_dataset
from workbench.hybrid.evaluate import per_query
from workbench.hybrid.runs import Run
from workbench.tracking.store import Store, client
from workbench.vectors.kernel import exact_topk

PREDICT = """
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
rows = json.loads(open(sys.argv[3]).read())
frame = pd.DataFrame({"query": rows}) if isinstance(rows[0], str) else pd.DataFrame({"vector": rows})
out = model.predict(frame, params={"k": int(sys.argv[4])})
print(json.dumps({"ids": out["ids"].tolist(), "scores": out["scores"].tolist()}))
"""


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return use_store(monkeypatch, tmp_path)


def _predict_fresh(store: Store, uri: str, rows: list, k: int, tmp_path) -> dict:
    """``models:/...`` loaded and queried in a new interpreter that shares nothing with this one."""
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, "-c", PREDICT, store.uri, uri, str(path), str(k)],
                          capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli_json(capsys, argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


@pytest.mark.slow
def test_hybrid_run_registers_and_the_model_reproduces_the_runs_ndcg(store, tmp_path, capsys):
    result = _cli_json(capsys, ["hybrid", "medline", "--out", str(tmp_path / "h")])
    run_id, bundle = result["parent_run_id"], result["bundle"]
    assert run_id and bundle["method"] == result["best_fused"]
    c = client(store.uri)
    parent = c.get_run(run_id)
    assert "mlflow.parentRunId" not in parent.data.tags  # the sweep itself, not one of its method runs
    assert {a.path for a in c.list_artifacts(run_id)} >= {"retrieval_index", "results"}
    assert {a.path.split("/")[-1] for a in c.list_artifacts(run_id, "retrieval_index")} >= {
        "bm25", "dense_vectors.npy", "doc_ids.json", "retrieval.json"}
    run_ndcg = parent.data.metrics["bundle_ndcg_at_10"]
    assert run_ndcg == pytest.approx(bundle["ndcg@10"])

    version = _cli_json(capsys, ["register", run_id, "--name", "m", "--alias", "champion"])
    assert version["load_uri"] == "models:/m@champion"
    mv = c.get_model_version_by_alias("m", "champion")
    assert mv.run_id == run_id and "medline" in mv.description and f"{run_ndcg:.4f}" in mv.description
    card_path = c.download_artifacts(run_id, "model_card/model_card.md", str(tmp_path / "card"))
    card = open(card_path).read()
    for fact in ("Hybrid retriever over medline", "1033 documents", "BM25", "all-MiniLM-L6-v2",
                 bundle["method"].split("_")[0], f"| ndcg@10 | {run_ndcg:.4f} |", "heldout_ndcg@10", run_id):
        assert fact in card, fact

    ds = load_dataset("medline")
    out = _predict_fresh(store, "models:/m@champion", ds.query_texts(), 10, tmp_path)
    assert all(len(ids) == 10 for ids in out["ids"])
    assert all(np.all(np.diff(s) <= 0) for s in out["scores"])  # ranked, best first
    row = {d: i for i, d in enumerate(ds.doc_ids)}
    served = Run("served", list(ds.query_ids), np.array([[row[d] for d in ids] for ids in out["ids"]]),
                 np.array(out["scores"]), ds.doc_ids)
    served_ndcg = float(per_query(served, ds.qrels, ["ndcg@10"])["ndcg@10"].mean())
    assert served_ndcg == pytest.approx(run_ndcg, abs=1e-9)


def test_ann_keep_best_registers_the_fastest_index_meeting_the_target(store, tmp_path, capsys):
    data = "synthetic:n=800,dim=16,queries=30,clusters=8,seed=1,metric=cosine"
    summary = _cli_json(capsys, ["ann", data, "--index", "faiss:HNSW16,Flat?efSearch=8,64",
                                 "--index", "faiss:Flat", "--runs", "1", "--budget", "0.2",
                                 "--out", str(tmp_path / "a"), "--keep", "best@0.95"])
    kept, run_id = summary["kept"], summary["parent_run_id"]
    frame = __import__("pandas").read_parquet(tmp_path / "a" / "results.parquet")
    meets = frame[frame["recall"] >= 0.95]
    assert kept["point"] == meets.loc[meets["qps"].idxmax(), "point"] and kept["recall_rebuilt"] >= 0.95
    metrics = client(store.uri).get_run(run_id).data.metrics
    assert metrics["kept_recall"] == pytest.approx(kept["recall_rebuilt"]) and metrics["kept_target"] == 0.95

    _cli_json(capsys, ["register", run_id, "--name", "ann-m", "--alias", "champion"])
    from workbench.bench.data import load_bench_data

    bench = load_bench_data(data, progress=False)
    out = _predict_fresh(store, "models:/ann-m@champion", bench.queries[:10].tolist(), 5, tmp_path)
    _, truth = exact_topk(bench.base, bench.queries[:10], 5, "cosine")
    hits = np.mean([len(set(map(int, got)) & set(t.tolist())) / 5 for got, t in zip(out["ids"], truth)])
    assert hits >= 0.9


def test_ann_keep_is_checked_and_an_unmet_target_is_an_error(store, tmp_path, capsys):
    assert main(["ann", "synthetic:n=50,dim=4", "--keep", "fastest@2", "--out", str(tmp_path / "x")]) == 2
    assert "best@RECALL" in capsys.readouterr().err
    data = "synthetic:n=2000,dim=32,queries=20,clusters=4,seed=2,metric=cosine"
    code = main(["ann", data, "--index", "faiss:IVF16,Flat?nprobe=1", "--runs", "1", "--budget", "0.2",
                 "--keep", "best@1.0", "--out", str(tmp_path / "y"), "--no-track"])
    err = capsys.readouterr().err
    assert code == 2 and "error: --keep best@1.0: no point reached recall 1.0; the best was" in err
