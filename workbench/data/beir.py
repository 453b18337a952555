"""BEIR-layout IR collections: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Every problem is reported as a :class:`~workbench.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from workbench.errors import DatasetError

Qrels = dict[str, dict[str, int]]


@dataclass
class BeirDataset:
    """One collection: documents, queries and graded relevance judgements."""

    name: str
    path: Path
    corpus: pd.DataFrame  # columns: _id, title, text
    queries: pd.DataFrame  # columns: _id, text
    qrels: Qrels
    split: str = "test"
    digest: str = field(default="")

    @property
    def doc_ids(self) -> list[str]:
        return self.corpus["_id"].tolist()

    @property
    def query_ids(self) -> list[str]:
        return self.queries["_id"].tolist()

    def doc_texts(self) -> list[str]:
        """Documents as ``title + " " + text``, stripped (the convention of the reference figures)."""
        return [f"{t} {x}".strip() for t, x in zip(self.corpus["title"], self.corpus["text"])]

    def query_texts(self) -> list[str]:
        return self.queries["text"].tolist()

    def __repr__(self) -> str:
        n_judged = sum(len(v) for v in self.qrels.values())
        return (f"BeirDataset({self.name!r}: {len(self.corpus)} docs, {len(self.queries)} queries, "
                f"{n_judged} qrels, split={self.split!r})")


def _utf8_lines(path: Path) -> Iterator[str]:
    """The lines of ``path`` decoded as UTF-8; a byte that is not UTF-8 is a :class:`DatasetError` naming
    the file, the line and the byte offset in the file (a raw ``UnicodeDecodeError`` names neither)."""
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: byte offset {offset + exc.start} (column {exc.start + 1}): "
                                   f"0x{raw[exc.start]:02x} is not UTF-8 ({exc.reason}); re-encode the file as "
                                   f"UTF-8") from None
            offset += len(raw)


def _read_jsonl(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: column {exc.colno}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        for key in required:
            if key not in obj or obj[key] is None:
                raise DatasetError(f"{path}:{lineno}: missing required field {key!r}")
        doc_id = str(obj["_id"])
        if not doc_id:
            raise DatasetError(f"{path}:{lineno}: empty '_id'")
        if doc_id in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate id {doc_id!r} (first seen on line {seen[doc_id]})")
        seen[doc_id] = lineno
        row = {"_id": doc_id}
        for key in required[1:] + optional:
            value = obj.get(key) or ""
            if not isinstance(value, str):
                raise DatasetError(f"{path}:{lineno}: field {key!r} of id {doc_id!r} is not a string")
            row[key] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=["_id", *required[1:], *optional])


def _read_qrels(path: Path, doc_ids: set[str], query_ids: set[str]) -> Qrels:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    qrels: Qrels = {}
    reader = csv.reader(_utf8_lines(path), delimiter="\t")
    for lineno, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(row) != 3:
            raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated columns "
                               f"(query-id, corpus-id, score), got {len(row)}")
        qid, did, score = (c.strip() for c in row)
        try:
            grade = int(score)
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: column 3: score {score!r} is not an integer") from None
        if qid not in query_ids:
            raise DatasetError(f"{path}:{lineno}: query id {qid!r} is not in queries.jsonl")
        if did not in doc_ids:
            raise DatasetError(f"{path}:{lineno}: document id {did!r} is not in corpus.jsonl")
        qrels.setdefault(qid, {})[did] = grade
    return qrels


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def load_beir(path: str | Path, split: str = "test", name: str | None = None) -> BeirDataset:
    """Load and validate a BEIR folder.

    Raises DatasetError for malformed JSON, a missing ``_id``, duplicate ids, qrels naming unknown
    queries or documents, and an empty corpus, each naming file and line.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")
    corpus_p, queries_p, qrels_p = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    corpus = _read_jsonl(corpus_p, ("_id",), ("title", "text"))
    if corpus.empty:
        raise DatasetError(f"{corpus_p}: empty corpus (no documents)")
    queries = _read_jsonl(queries_p, ("_id", "text"), ())
    qrels = _read_qrels(qrels_p, set(corpus["_id"]), set(queries["_id"]))
    return BeirDataset(name=name or root.name, path=root, corpus=corpus, queries=queries, qrels=qrels,
                       split=split, digest=_digest([corpus_p, queries_p, qrels_p]))
