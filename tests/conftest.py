"""Test-session settings: offline model, headless plots, and a throw-away MLflow store.

Tests never write the project's own `.mlflow` store: every process started by a test (notebook kernels,
CLI subprocesses) inherits the temporary tracking URI set here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
_STORE = Path(tempfile.mkdtemp(prefix="workbench-test-mlflow-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE / 'mlflow.db'}"
os.environ["WORKBENCH_OUTBOX"] = str(_STORE / "outbox")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def real_data_available() -> bool:
    from workbench.config import data_dirs

    return any((d / "cranfield" / "corpus.jsonl").is_file() for d in data_dirs())


if not os.environ.get("WORKBENCH_DATA") and (SHARED / "cranfield").is_dir():
    os.environ["WORKBENCH_DATA"] = str(SHARED)

requires_real_data = pytest.mark.skipif(
    not real_data_available(), reason="real collections not found (set WORKBENCH_DATA)")


def write_beir(root: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str, int]]) -> Path:
    """A small BEIR folder for tests."""
    import json

    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def topic_collection(root: Path, topics: list[str], n_docs: int, filler_words: int, judged: int) -> Path:
    """A BEIR folder of ``n_docs`` documents, each a topic phrase plus ``filler_words`` random common words
    (seeded), one query per topic, and up to ``judged`` relevant documents per query (grades 1 and 2)."""
    import numpy as np

    rng = np.random.default_rng(0)
    corpus, qrels = [], []
    for i in range(n_docs):
        topic = topics[i % len(topics)]
        filler = " ".join(rng.choice(["study", "results", "method", "model", "flow", "test"], filler_words))
        corpus.append({"_id": f"d{i}", "title": topic if i % 2 else "", "text": f"{topic} {filler}"})
    queries = [{"_id": f"q{j}", "text": f"{t} experiments"} for j, t in enumerate(topics)]
    for j in range(len(topics)):
        qrels += [(f"q{j}", f"d{i}", 1 + (i % 3 == 0)) for i in range(j, n_docs, len(topics))][:judged]
    return write_beir(root, corpus, queries, qrels)


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(
        tmp_path / "tiny",
        [{"_id": "d1", "title": "Wing flutter", "text": "flutter of swept wings at high speed"},
         {"_id": "d2", "title": "Boundary layers", "text": "laminar boundary layer on a flat plate"},
         {"_id": "d3", "title": "", "text": "heat transfer in hypersonic flow"}],
        [{"_id": "q1", "text": "wing flutter"}, {"_id": "q2", "text": "boundary layer"}],
        [("q1", "d1", 2), ("q2", "d2", 1)],
    )
