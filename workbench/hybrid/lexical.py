"""BM25 retrieval with bm25s: English stopwords, PyStemmer English stemming, selectable variants.

bm25s always returns ``k`` results and pads with zero-score documents when fewer match; those are
dropped here (score <= 0 means no query term matched), so a query's list can be shorter than ``k``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.errors import LexicalError
from workbench.hybrid.runs import Run
from workbench.io import atomic_write_json

# Lucene BM25 (Lucene >= 8 drops the (k1 + 1) factor), the Robertson/Sparck-Jones original, and BM25+
# (Lv & Zhai, CIKM 2011, "Lower-bounding term frequency normalization").
VARIANTS = ("lucene", "robertson", "bm25+")
_SETTINGS = "workbench-bm25.json"



class BM25Retriever:
    """Index texts once, then ``retrieve`` a :class:`Run` for many queries.

    Defaults are those of the reference figures: Lucene BM25, ``k1=1.5``, ``b=0.75``, English
    stopwords, PyStemmer English. ``delta`` only applies to ``bm25+``.
    """

    def __init__(self, method: str = "lucene", k1: float = 1.5, b: float = 0.75, delta: float = 0.5,
                 stopwords: str | None = "en", stemmer: str | None = "english") -> None:
        if method not in VARIANTS:
            raise LexicalError(f"unknown BM25 variant {method!r}; choose one of {', '.join(VARIANTS)}")
        if k1 < 0 or not 0 <= b <= 1:
            raise LexicalError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.method, self.k1, self.b, self.delta = method, float(k1), float(b), float(delta)
        self.stopwords, self.stemmer_language = stopwords, stemmer
        self.doc_ids: list[str] = []
        self._bm25 = None

    @property
    def settings(self) -> dict:
        return {"method": self.method, "k1": self.k1, "b": self.b, "delta": self.delta,
                "stopwords": self.stopwords, "stemmer": self.stemmer_language}

    def _tokenize(self, texts: Sequence[str]):
        import bm25s
        import Stemmer

        stemmer = Stemmer.Stemmer(self.stemmer_language) if self.stemmer_language else None
        return bm25s.tokenize(list(texts), stopwords=self.stopwords, stemmer=stemmer, show_progress=False)

    def index(self, texts: Sequence[str], doc_ids: Sequence[str]) -> "BM25Retriever":
        """Build the index over ``texts`` whose ids are ``doc_ids`` (same length)."""
        import bm25s

        if len(texts) != len(doc_ids):
            raise LexicalError(f"{len(texts)} texts but {len(doc_ids)} document ids")
        if not len(texts):
            raise LexicalError("cannot index an empty corpus")
        self._bm25 = bm25s.BM25(method=self.method, k1=self.k1, b=self.b, delta=self.delta)
        self._bm25.index(self._tokenize(texts), show_progress=False)
        self.doc_ids = list(doc_ids)
        return self

    def retrieve(self, queries: Sequence[str], k: int = 100, query_ids: Sequence[str] | None = None,
                 name: str = "bm25") -> Run:
        """Top-``k`` documents of each query (fewer when fewer share a term with it)."""
        if self._bm25 is None:
            raise LexicalError("BM25 index is empty: call index() or load() first")
        if isinstance(queries, str):
            raise TypeError("retrieve takes a sequence of queries, not one string")
        qids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(queries))]
        if len(qids) != len(queries):
            raise LexicalError(f"{len(queries)} queries but {len(qids)} query ids")
        k_eff = min(k, len(self.doc_ids))
        if not len(queries):
            return Run(name, [], np.empty((0, k_eff), np.int64), np.empty((0, k_eff)), self.doc_ids, 0.0)
        ids, scores = self._bm25.retrieve(self._tokenize(queries), k=k_eff, show_progress=False, n_threads=1)
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        # Drop bm25s' zero-score padding; a stable sort keeps bm25s' order among real results.
        keep = scores > 0
        order = np.argsort(~keep, axis=1, kind="stable")
        ids, scores, keep = (np.take_along_axis(a, order, axis=1) for a in (ids, scores, keep))
        width = int(keep.sum(axis=1).max(initial=0))
        ids = np.where(keep, ids, -1)[:, :width]
        scores = np.where(keep, scores, np.nan)[:, :width]
        return Run(name, qids, ids, scores, self.doc_ids, min_score=0.0)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index folder atomically (a temp folder renamed into place)."""
        if self._bm25 is None:
            raise LexicalError("nothing to save: the BM25 index is empty")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            self._bm25.save(str(tmp), show_progress=False)
            atomic_write_json(tmp / _SETTINGS, {"settings": self.settings, "doc_ids": self.doc_ids})
            old = path.with_name(f".{path.name}.old")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BM25Retriever":
        """Load a folder written by :meth:`save`."""
        import bm25s

        path = Path(path)
        meta_path = path / _SETTINGS
        if not meta_path.is_file():
            raise LexicalError(f"{path}: not a BM25 index folder ({_SETTINGS} missing)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LexicalError(f"{meta_path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        self = cls(**meta["settings"])
        self._bm25 = bm25s.BM25.load(str(path), show_progress=False)
        self.doc_ids = list(meta["doc_ids"])
        return self
