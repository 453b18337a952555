"""BEIR loader: good data loads; each kind of bad input names file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import requires_real_data, write_beir

from workbench.data import list_datasets, load_beir, load_dataset
from workbench.errors import DatasetError


def test_loads_tiny_collection(tiny_beir: Path) -> None:
    ds = load_beir(tiny_beir)
    assert ds.doc_ids == ["d1", "d2", "d3"]
    assert ds.query_ids == ["q1", "q2"]
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1}}
    assert ds.doc_texts() == ["Wing flutter flutter of swept wings at high speed",
                              "Boundary layers laminar boundary layer on a flat plate",
                              "heat transfer in hypersonic flow"]
    assert len(ds.digest) == 64


def test_digest_changes_with_content(tiny_beir: Path) -> None:
    before = load_beir(tiny_beir).digest
    with (tiny_beir / "corpus.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "d4", "title": "", "text": "more"}) + "\n")
    assert load_beir(tiny_beir).digest != before


def _corrupt(root: Path, name: str, line: str, position: int = 1) -> None:
    path = root / name
    lines = path.read_text().splitlines()
    lines.insert(position, line)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name, line, message", [
    ("corpus.jsonl", '{"_id": "d9", "text": "unterminated', r"corpus.jsonl:2: column \d+: malformed JSON"),
    ("corpus.jsonl", '{"title": "no id", "text": "x"}', r"corpus.jsonl:2: missing required field '_id'"),
    ("corpus.jsonl", '{"_id": "d1", "text": "again"}', r"corpus.jsonl:2: duplicate id 'd1' \(first seen on line 1\)"),
    ("queries.jsonl", '{"_id": "q1", "text": "again"}', r"queries.jsonl:2: duplicate id 'q1'"),
    ("queries.jsonl", '{"_id": "q7"}', r"queries.jsonl:2: missing required field 'text'"),
    ("queries.jsonl", '[1, 2]', r"queries.jsonl:2: expected a JSON object"),
])
def test_bad_jsonl(tiny_beir: Path, name: str, line: str, message: str) -> None:
    _corrupt(tiny_beir, name, line)
    with pytest.raises(DatasetError, match=message):
        load_beir(tiny_beir)


@pytest.mark.parametrize("line, message", [
    ("q404\td1\t1", r"test.tsv:3: query id 'q404' is not in queries.jsonl"),
    ("q1\td404\t1", r"test.tsv:3: document id 'd404' is not in corpus.jsonl"),
    ("q1\td2\thigh", r"test.tsv:3: column 3: score 'high' is not an integer"),
    ("q1\td2", r"test.tsv:3: expected 3 tab-separated columns"),
])
def test_bad_qrels(tiny_beir: Path, line: str, message: str) -> None:
    _corrupt(tiny_beir, "qrels/test.tsv", line, position=2)
    with pytest.raises(DatasetError, match=message):
        load_beir(tiny_beir)


def test_empty_corpus(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "empty", [], [{"_id": "q1", "text": "x"}], [])
    with pytest.raises(DatasetError, match=r"corpus.jsonl: empty corpus"):
        load_beir(root)


def test_missing_files(tmp_path: Path, tiny_beir: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_beir(tmp_path / "nowhere")
    (tiny_beir / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match=r"test.tsv: file not found"):
        load_beir(tiny_beir)


def test_named_dataset_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_beir: Path) -> None:
    monkeypatch.setenv("WORKBENCH_DATA", str(tiny_beir.parent))
    assert load_dataset("tiny").name == "tiny"
    names = {d.name: d.present for d in list_datasets()}
    assert names["tiny"] is True
    with pytest.raises(DatasetError, match=r"dataset 'cranfield' not found .* `workbench data fetch cranfield`"):
        load_dataset("cranfield")


@requires_real_data
@pytest.mark.parametrize("name, docs, queries, judged", [
    ("cranfield", 1400, 225, 1612), ("cisi", 1460, 76, 3114), ("medline", 1033, 30, 696)])
def test_real_collections(name: str, docs: int, queries: int, judged: int) -> None:
    ds = load_dataset(name)
    assert (len(ds.corpus), len(ds.queries), sum(map(len, ds.qrels.values()))) == (docs, queries, judged)
