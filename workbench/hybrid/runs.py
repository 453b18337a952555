"""Dense run representation and TREC run files.

A :class:`Run` holds, for every query, its ranked top-N documents as two ``(n_queries, depth)`` arrays:
``doc_ids`` (int64 positions in the shared corpus id list ``docs``; ``-1`` pads a short list) and
``scores`` (float64; ``NaN`` pads). Rows are sorted by score, best first, and padding only trails.
Fusion works on these arrays for all queries at once, never on per-document dictionaries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.errors import RunError
from workbench.io import atomic_write_text


@dataclass(frozen=True, eq=False)
class Run:
    """Ranked results of one method for a list of queries (see the module docstring)."""

    name: str
    query_ids: list[str]
    doc_ids: np.ndarray
    scores: np.ndarray
    docs: Sequence[str]
    min_score: float | None = None  # the scoring function's theoretical minimum (for TMM normalisation)
    _doc_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.doc_ids, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        if ids.ndim == 1 and ids.size == 0:
            ids, scores = ids.reshape(len(self.query_ids), 0), scores.reshape(len(self.query_ids), 0)
        object.__setattr__(self, "doc_ids", ids)
        object.__setattr__(self, "scores", scores)
        if ids.ndim != 2 or ids.shape != scores.shape:
            raise RunError(f"run {self.name!r}: doc_ids {ids.shape} and scores {scores.shape} "
                           "must be equal 2-d shapes")
        if ids.shape[0] != len(self.query_ids):
            raise RunError(f"run {self.name!r}: {ids.shape[0]} result rows for {len(self.query_ids)} query ids")
        if len(set(self.query_ids)) != len(self.query_ids):
            raise RunError(f"run {self.name!r}: duplicate query ids")
        self._validate()

    def _where(self, row: int, col: int) -> str:
        doc = self.doc_ids[row, col]
        name = self.docs[doc] if 0 <= doc < len(self.docs) else str(doc)
        return f"run {self.name!r}: query {self.query_ids[row]!r}, rank {col + 1}, document {name!r}"

    def _validate(self) -> None:
        ids, scores = self.doc_ids, self.scores
        n_docs = len(self.docs)
        bad = (ids < -1) | (ids >= n_docs)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise RunError(f"run {self.name!r}: query {self.query_ids[r]!r}, rank {c + 1}: document position "
                           f"{ids[r, c]} outside the corpus of {n_docs} documents")
        valid = ids >= 0
        if (valid[:, 1:] & ~valid[:, :-1]).any():
            r = int(np.argwhere(valid[:, 1:] & ~valid[:, :-1])[0, 0])
            raise RunError(f"run {self.name!r}: query {self.query_ids[r]!r}: padding (-1) before a result")
        nonfinite = valid & ~np.isfinite(scores)
        if nonfinite.any():
            r, c = np.argwhere(nonfinite)[0]
            raise RunError(f"{self._where(r, c)}: score is {scores[r, c]} (scores must be finite)")
        both = valid[:, 1:] & valid[:, :-1]
        rising = both & (scores[:, 1:] > scores[:, :-1])
        if rising.any():
            r, c = np.argwhere(rising)[0]
            raise RunError(f"{self._where(r, c + 1)}: score {scores[r, c + 1]} above the score "
                           f"{scores[r, c]} at rank {c + 1} (rows must be sorted best first)")
        srt = np.sort(np.where(valid, ids, -1 - np.arange(ids.shape[1])), axis=1)
        dup = srt[:, 1:] == srt[:, :-1]
        if dup.any():
            r, c = np.argwhere(dup)[0]
            raise RunError(f"run {self.name!r}: query {self.query_ids[r]!r}: document "
                           f"{self.docs[srt[r, c]]!r} appears twice")

    @property
    def depth(self) -> int:
        return self.doc_ids.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """Boolean ``(n_queries, depth)``: where a result is present."""
        return self.doc_ids >= 0

    def lengths(self) -> np.ndarray:
        return self.valid.sum(axis=1)

    def doc_index(self) -> dict[str, int]:
        """Document id -> position in ``docs`` (built once)."""
        if self._doc_index is None:
            object.__setattr__(self, "_doc_index", {d: i for i, d in enumerate(self.docs)})
        return self._doc_index  # type: ignore[return-value]

    def truncate(self, depth: int) -> "Run":
        return Run(self.name, self.query_ids, self.doc_ids[:, :depth], self.scores[:, :depth], self.docs,
                   self.min_score, self._doc_index)

    def to_dict(self, strict: bool = True) -> dict[str, dict[str, float]]:
        """``{query: {doc: score}}`` (pytrec_eval's and ranx's input); ``strict`` makes scores strictly
        decreasing in rank (see :func:`strictly_decreasing`) so that no tie rule can reorder the run."""
        scores = strictly_decreasing(self.scores, self.valid) if strict else self.scores
        out: dict[str, dict[str, float]] = {}
        for r, q in enumerate(self.query_ids):
            n = int(self.valid[r].sum())
            out[q] = {self.docs[d]: float(s) for d, s in zip(self.doc_ids[r, :n], scores[r, :n])}
        return out

    @classmethod
    def from_dict(cls, name: str, results: dict[str, dict[str, float]], docs: Sequence[str],
                  query_ids: Sequence[str] | None = None, min_score: float | None = None,
                  source: str = "results") -> "Run":
        """Build a run from ``{query: {doc: score}}``; rows are sorted by score (ties by corpus order)."""
        index = {d: i for i, d in enumerate(docs)}
        qids = list(query_ids) if query_ids is not None else list(results)
        depth = max((len(results.get(q, {})) for q in qids), default=0)
        ids = np.full((len(qids), depth), -1, dtype=np.int64)
        scores = np.full((len(qids), depth), np.nan)
        for r, q in enumerate(qids):
            items = results.get(q, {})
            pos = []
            for d in items:
                if d not in index:
                    raise RunError(f"{source}: query {q!r}: document {d!r} is not in the corpus")
                pos.append(index[d])
            s = np.array([items[d] for d in items], dtype=np.float64)
            if np.isnan(s).any():
                raise RunError(f"{source}: query {q!r}: NaN score for document {list(items)[int(np.argmax(np.isnan(s)))]!r}")
            p = np.array(pos, dtype=np.int64)
            order = np.lexsort((p, -s))
            ids[r, :len(p)], scores[r, :len(p)] = p[order], s[order]
        return cls(name, qids, ids, scores, docs, min_score, index)


def strictly_decreasing(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scores made strictly decreasing along each row, in single precision.

    trec_eval (and pytrec_eval) sort a query's results by score and break ties by document id, not by
    the rank the system gave, so equal scores (common in RRF) would be silently reordered. pytrec_eval
    compares scores in single precision (1 and 1 - 1e-9 tie there), so scores are rounded to float32
    and a score not below its predecessor becomes the next float32 below it: the run's order is kept
    and no score moves by more than a few float32 steps (relative 1e-7 each).
    """
    out = np.array(scores, dtype=np.float32, copy=True)
    if valid is None:
        valid = np.isfinite(out)
    down = np.float32(-np.inf)
    for c in range(1, out.shape[1]):
        both = valid[:, c] & valid[:, c - 1]
        out[:, c] = np.where(both, np.minimum(out[:, c], np.nextafter(out[:, c - 1], down)), out[:, c])
    return out.astype(np.float64)


def write_trec(run: Run, path: str | os.PathLike, tag: str | None = None) -> Path:
    """Write ``qid Q0 docid rank score tag`` lines atomically, scores made strictly decreasing by
    :func:`strictly_decreasing` and printed exactly (``repr``), so trec_eval keeps the run's order."""
    tag = tag or run.name
    if any(c.isspace() for c in tag):
        raise RunError(f"run tag {tag!r} contains whitespace")
    scores = strictly_decreasing(run.scores, run.valid)
    lines = []
    for r, q in enumerate(run.query_ids):
        for c in range(int(run.valid[r].sum())):
            lines.append(f"{q} Q0 {run.docs[run.doc_ids[r, c]]} {c + 1} {float(scores[r, c])!r} {tag}\n")
    return atomic_write_text(path, "".join(lines))


def read_trec(path: str | os.PathLike, docs: Sequence[str], name: str | None = None,
              query_ids: Sequence[str] | None = None, min_score: float | None = None) -> Run:
    """Read a TREC run file against the corpus id list ``docs``.

    Results keep the file's rank order. Raises :class:`RunError` naming file and line for a wrong
    number of columns, a non-numeric rank or score, a NaN score, a duplicate (query, document), or a
    document that is not in the corpus. ``query_ids`` fixes the row order (queries absent from the file
    get empty rows); by default rows follow first appearance in the file.
    """
    path = Path(path)
    index = {d: i for i, d in enumerate(docs)}
    rows: dict[str, list[tuple[int, float, int]]] = {}
    seen: dict[tuple[str, str], int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise RunError(f"{path}:{lineno}: expected 6 columns (qid Q0 docid rank score tag), got {len(parts)}")
            q, _, d, rank_s, score_s, _tag = parts
            try:
                rank, score = int(rank_s), float(score_s)
            except ValueError:
                raise RunError(f"{path}:{lineno}: rank {rank_s!r} or score {score_s!r} is not a number") from None
            if not np.isfinite(score):
                raise RunError(f"{path}:{lineno}: query {q!r}, document {d!r}: score is {score_s}")
            if d not in index:
                raise RunError(f"{path}:{lineno}: query {q!r}: document {d!r} is not in the corpus")
            if (q, d) in seen:
                raise RunError(f"{path}:{lineno}: query {q!r}: document {d!r} already on line {seen[q, d]}")
            seen[q, d] = lineno
            rows.setdefault(q, []).append((rank, score, index[d]))
    qids = list(query_ids) if query_ids is not None else list(rows)
    unknown = set(rows) - set(qids)
    if unknown:
        raise RunError(f"{path}: queries {sorted(unknown)[:5]} are not among the {len(qids)} expected queries")
    depth = max((len(v) for v in rows.values()), default=0)
    ids = np.full((len(qids), depth), -1, dtype=np.int64)
    scores = np.full((len(qids), depth), np.nan)
    for r, q in enumerate(qids):
        items = sorted(rows.get(q, []), key=lambda t: (t[0], -t[1]))
        for c, (_, s, d) in enumerate(items):
            ids[r, c], scores[r, c] = d, s
    return Run(name or path.stem, qids, ids, scores, docs, min_score, index)
