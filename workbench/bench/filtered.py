"""Filtered vector search: metadata in DuckDB, predicates that select ids, and three strategies.

A predicate over a data set's attribute table selects the ids a result may contain. Three ways to
honour it (compared in the filtered-search literature, e.g. Gollapudi et al., "Filtered-DiskANN",
WWW 2023; Patel et al., "ACORN", SIGMOD 2024):

- ``prefilter``: the index's own filter (faiss ``IDSelector`` through search parameters, hnswlib
  ``filter=``) restricts the search to allowed ids while it traverses the index.
- ``postfilter``: search ``k * overfetch`` neighbours without a filter, drop disallowed ids, keep the
  first ``k``. With selectivity ``s`` about ``s * k * overfetch`` allowed ids survive, so it returns
  fewer than ``k`` once ``s`` falls below ``1 / overfetch`` (the collapse the sweep shows).
- ``exact_subset``: brute force over the selected vectors only; exact, and the ground truth of
  filtered recall.

Every strategy has the signature ``(target, queries, k, allowed, **options) -> (distances, ids)``
with the conventions of ``workbench.index.base``: similarities for ``cosine``/``ip``, squared L2 for
``l2``, missing results ``id == -1`` (distance ``-inf`` for similarities, ``+inf`` for ``l2``).

Predicate grammar (anything else is rejected; values are bound as DuckDB parameters, columns are
checked against the table, so no text reaches SQL unparsed)::

    expr       := term ("OR" term)*
    term       := factor ("AND" factor)*
    factor     := "NOT" factor | "(" expr ")" | comparison
    comparison := column op literal
                | column ["NOT"] "IN" "(" literal ("," literal)* ")"
                | column ["NOT"] "BETWEEN" literal "AND" literal
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := number | 'text' (a quote inside text is written '')

Keywords are case-insensitive; column names are identifiers (letters, digits, ``_``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.errors import DimensionError, WorkbenchError
from workbench.index.base import check_metric, unit_rows
from workbench.io import atomic_write_bytes

if TYPE_CHECKING:
    import duckdb

    from workbench.bench.sinks import ResultsSink
    from workbench.index.base import VectorIndex

DEFAULT_SELECTIVITIES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5)
DEFAULT_OVERFETCH = (1, 2, 10)
TIE_EPS = 1e-3  # ann-benchmarks' slack on the k-th true distance


class PredicateError(WorkbenchError, ValueError):
    """A predicate outside the grammar, on an unknown column, or with a value of the wrong type."""


class EmptySelectionError(WorkbenchError, ValueError):
    """A predicate selects no ids, so there is nothing to search."""


# --------------------------------------------------------------------------------------------
# Predicates: a small parser that emits parameterised SQL
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN"}
_NUMERIC_TYPES = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|"
                            r"UBIGINT|FLOAT|REAL|DOUBLE|DECIMAL.*)$")


@dataclass(frozen=True)
class _Token:
    kind: str  # num | str | op | punct | word | kw | end
    text: str
    pos: int


def _tokenize(predicate: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(predicate):
        if predicate[pos:].strip() == "":
            break
        m = _TOKEN.match(predicate, pos)
        if m is None or m.end() == pos:
            raise PredicateError(f"predicate {predicate!r}: unexpected character at position {pos}: "
                                 f"{predicate[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        text, start = m.group(kind), m.start(kind)
        if kind == "word" and text.upper() in _KEYWORDS:
            kind, text = "kw", text.upper()
        tokens.append(_Token(kind, text, start))
        pos = m.end()
    tokens.append(_Token("end", "", len(predicate)))
    return tokens


class _Parser:
    """Recursive descent over the grammar in the module docstring; builds SQL and its parameters."""

    def __init__(self, predicate: str, columns: Mapping[str, str]) -> None:
        self.predicate = predicate
        self.columns = columns
        self.tokens = _tokenize(predicate)
        self.i = 0
        self.params: list[Any] = []

    def fail(self, message: str) -> PredicateError:
        tok = self.tokens[self.i]
        where = f"at position {tok.pos} ({tok.text!r})" if tok.kind != "end" else "at the end"
        return PredicateError(f"predicate {self.predicate!r}: {message} {where}")

    def peek(self, kind: str, text: str | None = None) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == kind and (text is None or tok.text == text)

    def take(self, kind: str, text: str | None = None) -> _Token:
        if not self.peek(kind, text):
            raise self.fail(f"expected {text or kind}")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> str:
        if self.peek("end"):
            raise PredicateError("predicate is empty")
        sql = self.expr()
        if not self.peek("end"):
            raise self.fail("unexpected token")
        return sql

    def expr(self) -> str:
        parts = [self.term()]
        while self.peek("kw", "OR"):
            self.i += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.peek("kw", "AND"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.peek("kw", "NOT"):
            self.i += 1
            return f"(NOT {self.factor()})"
        if self.peek("punct", "("):
            self.i += 1
            sql = self.expr()
            self.take("punct", ")")
            return sql
        return self.comparison()

    def comparison(self) -> str:
        if not self.peek("word"):
            raise self.fail("expected a column name")
        tok = self.take("word")
        name = tok.text
        if name not in self.columns:
            raise PredicateError(f"predicate {self.predicate!r}: unknown column {name!r} at position "
                                 f"{tok.pos}; columns: {', '.join(self.columns)}")
        col = f'"{name}"'
        negate = ""
        if self.peek("kw", "NOT"):
            self.i += 1
            negate = "NOT "
            if not (self.peek("kw", "IN") or self.peek("kw", "BETWEEN")):
                raise self.fail("expected IN or BETWEEN after NOT")
        if self.peek("kw", "IN"):
            self.i += 1
            self.take("punct", "(")
            marks = [self.literal(name)]
            while self.peek("punct", ","):
                self.i += 1
                marks.append(self.literal(name))
            self.take("punct", ")")
            return f"({col} {negate}IN ({', '.join(marks)}))"
        if self.peek("kw", "BETWEEN"):
            self.i += 1
            low = self.literal(name)
            self.take("kw", "AND")
            high = self.literal(name)
            return f"({col} {negate}BETWEEN {low} AND {high})"
        if not self.peek("op"):
            raise self.fail(f"expected a comparison operator after column {name!r}")
        op = self.take("op").text
        return f"({col} {'<>' if op == '!=' else op} {self.literal(name)})"

    def literal(self, column: str) -> str:
        numeric = bool(_NUMERIC_TYPES.match(self.columns[column].upper()))
        tok = self.tokens[self.i]
        if tok.kind == "num":
            if not numeric:
                raise self.fail(f"column {column!r} is {self.columns[column]}, got a number")
            value: Any = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        elif tok.kind == "str":
            if numeric:
                raise self.fail(f"column {column!r} is {self.columns[column]}, got text")
            value = tok.text[1:-1].replace("''", "'")
        else:
            raise self.fail(f"expected a value for column {column!r}")
        self.i += 1
        self.params.append(value)
        return "?"


def compile_predicate(predicate: str, columns: Mapping[str, str]) -> tuple[str, list[Any]]:
    """Parse ``predicate`` (grammar in the module docstring) against ``columns`` (name -> DuckDB type).

    Returns the SQL ``WHERE`` fragment with ``?`` placeholders and the parameter values.
    """
    parser = _Parser(predicate, columns)
    return parser.parse(), parser.params


# --------------------------------------------------------------------------------------------
# Metadata in DuckDB
# --------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Metadata:
    """Attributes of a vector set in an in-process DuckDB table: one row per vector id.

    ``id`` (BIGINT) is the vector's row position in the index; the other columns are attributes.
    ``database`` is ``":memory:"`` or a DuckDB file path.
    """

    def __init__(self, frame: pd.DataFrame, table: str = "metadata", database: str | Path = ":memory:") -> None:
        import duckdb

        table = re.sub(r"\W", "_", table)  # data set names such as "ir-sentences" name the table
        if not _IDENT.match(table):
            table = "t_" + table
        if "id" not in frame.columns:
            raise PredicateError(f"metadata for table {table!r} has no 'id' column; columns: {list(frame.columns)}")
        for col in frame.columns:
            if not _IDENT.match(str(col)):
                raise PredicateError(f"metadata column {col!r} of table {table!r} is not an identifier")
        ids = frame["id"].to_numpy()
        if not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
            raise PredicateError(f"metadata 'id' of table {table!r} must be non-negative integers")
        dup = frame["id"][frame["id"].duplicated()]
        if len(dup):
            raise PredicateError(f"metadata 'id' of table {table!r} repeats id {int(dup.iloc[0])}")
        self.table = table
        self.con: duckdb.DuckDBPyConnection = duckdb.connect(str(database))
        frame = frame.assign(id=frame["id"].astype("int64"))
        self.con.register("_frame", frame)
        self.con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM _frame')
        self.con.unregister("_frame")
        self.columns: dict[str, str] = {
            row[0]: row[1] for row in self.con.execute(f'DESCRIBE "{table}"').fetchall()}
        self.n = int(self.con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    @classmethod
    def synthetic(cls, n: int, seed: int = 0, n_categories: int = 20, table: str = "metadata") -> "Metadata":
        """Attributes drawn independently of the vectors (so any selection is uncorrelated with them).

        - ``category``: ``'c00'``, ``'c01'``, ... with Zipf-like frequencies (``c00`` most common);
        - ``year``: an integer uniform in 1990..2024;
        - ``u``: a random permutation of ``(i + 0.5) / n``, so ``u < s`` selects exactly
          ``round(s * n)`` ids: selectivity under exact control.
        """
        rng = np.random.default_rng(seed)
        weights = 1.0 / np.arange(1, n_categories + 1)
        category = rng.choice(n_categories, size=n, p=weights / weights.sum())
        frame = pd.DataFrame({
            "id": np.arange(n, dtype=np.int64),
            "category": [f"c{c:02d}" for c in category],
            "year": rng.integers(1990, 2025, size=n).astype(np.int32),
            "u": (rng.permutation(n) + 0.5) / n,
        })
        return cls(frame, table=table)

    def select(self, predicate: str) -> np.ndarray:
        """Sorted int64 ids of the rows matching ``predicate``; raises if none match."""
        import duckdb

        where, params = compile_predicate(predicate, self.columns)
        try:
            rows = self.con.execute(f'SELECT id FROM "{self.table}" WHERE {where} ORDER BY id', params).fetchnumpy()
        except duckdb.Error as exc:  # e.g. an integer literal too large for the column
            raise PredicateError(f"predicate {predicate!r} on table {self.table!r}: {exc}") from exc
        ids = np.ascontiguousarray(rows["id"], dtype=np.int64)
        if ids.size == 0:
            raise EmptySelectionError(f"predicate {predicate!r} selects no ids of the {self.n} in table "
                                      f"{self.table!r}")
        return ids

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame, ordered by id."""
        return self.con.execute(f'SELECT * FROM "{self.table}" ORDER BY id').df()

    def close(self) -> None:
        self.con.close()


def selectivity_predicate(selectivity: float) -> str:
    """The predicate on the uniform column ``u`` that selects a fraction ``selectivity`` of the ids."""
    if not 0.0 < selectivity <= 1.0:
        raise PredicateError(f"selectivity must be in (0, 1], got {selectivity}")
    return f"u < {selectivity!r}"


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

class FilterTarget:
    """What a strategy searches: the base vectors (for exact search) and optionally an ANN index.

    ``base`` rows are the ids (row positions) the index was built with. For ``cosine`` the base and the
    queries are L2-normalised here, as the indexes do, so that scores are comparable.
    """

    def __init__(self, base: np.ndarray, metric: str, index: "VectorIndex | None" = None) -> None:
        check_metric(metric)
        base = np.ascontiguousarray(base, dtype=np.float32)
        if base.ndim != 2 or base.shape[0] == 0:
            raise WorkbenchError(f"base vectors must be a non-empty 2-d array, got shape {base.shape}")
        if index is not None and index.ntotal != base.shape[0]:
            raise WorkbenchError(f"index holds {index.ntotal} vectors but the base has {base.shape[0]}")
        self.metric = metric
        self.base = unit_rows(base) if metric == "cosine" else base
        self.sqnorms = np.einsum("ij,ij->i", self.base, self.base) if metric == "l2" else None
        self.index = index

    @property
    def ntotal(self) -> int:
        return self.base.shape[0]

    def with_index(self, index: "VectorIndex") -> "FilterTarget":
        """The same vectors searched through ``index`` (shares the prepared base)."""
        if index.ntotal != self.ntotal:
            raise WorkbenchError(f"index holds {index.ntotal} vectors but the base has {self.ntotal}")
        other = copy.copy(self)
        other.index = index
        return other

    def prepare(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.base.shape[1]:
            raise DimensionError(f"queries have shape {q.shape}; expected (n, {self.base.shape[1]})")
        return unit_rows(q) if self.metric == "cosine" else q

    def missing_distance(self) -> float:
        return math.inf if self.metric == "l2" else -math.inf

    def distances(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Recomputed distance of each ``ids[i, j]`` to ``queries[i]`` (missing ids get the fill value)."""
        q = self.prepare(queries)
        vecs = self.base[np.maximum(ids, 0)]
        dots = np.einsum("qd,qkd->qk", q, vecs)
        if self.metric == "l2":
            q_sq = np.einsum("qd,qd->q", q, q)[:, None]
            dist = np.maximum(self.sqnorms[np.maximum(ids, 0)] - 2 * dots + q_sq, 0)
        else:
            dist = dots
        return np.where(ids >= 0, dist, self.missing_distance())

    def require_index(self, strategy: str) -> "VectorIndex":
        if self.index is None:
            raise WorkbenchError(f"strategy {strategy!r} needs an index; this target has only base vectors")
        return self.index


def _check_allowed(allowed: np.ndarray, ntotal: int) -> np.ndarray:
    allowed = np.asarray(allowed)
    if allowed.ndim != 1 or allowed.size == 0:
        raise EmptySelectionError(f"allowed ids must be a non-empty 1-d array, got shape {allowed.shape}")
    if allowed[0] < 0 or allowed[-1] >= ntotal:
        raise WorkbenchError(f"allowed ids span {allowed[0]}..{allowed[-1]} but the index holds ids 0..{ntotal - 1}")
    unsorted = np.flatnonzero(np.diff(allowed) <= 0)
    if unsorted.size:  # the strategies look ids up with searchsorted
        i = int(unsorted[0])
        raise WorkbenchError(f"allowed ids must be sorted and unique: {allowed[i]} then {allowed[i + 1]} at {i}")
    return allowed.astype(np.int64, copy=False)


def exact_subset(target: FilterTarget, queries: np.ndarray, k: int, allowed: np.ndarray,
                 **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the allowed vectors only; exact, ties broken by the smaller id."""
    allowed = _check_allowed(allowed, target.ntotal)
    q = target.prepare(queries)
    sub = target.base[allowed]
    if target.metric == "l2":
        q_sq = np.einsum("qd,qd->q", q, q)[:, None]
        dist = np.maximum(target.sqnorms[allowed][None, :] - 2 * (q @ sub.T) + q_sq, 0)
        key = dist
    else:
        dist = q @ sub.T
        key = -dist
    kk = min(k, allowed.size)
    if kk < allowed.size:
        part = np.argpartition(key, kk - 1, axis=1)[:, :kk]
    else:
        part = np.tile(np.arange(kk), (len(q), 1))
    # allowed is sorted, so ordering positions within a tie orders ids
    order = np.lexsort((part, np.take_along_axis(key, part, 1)))
    pos = np.take_along_axis(part, order, 1)
    distances = np.full((len(q), k), target.missing_distance(), dtype=np.float32)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    distances[:, :kk] = np.take_along_axis(dist, pos, 1)
    ids[:, :kk] = allowed[pos]
    return distances, ids


def prefilter(target: FilterTarget, queries: np.ndarray, k: int, allowed: np.ndarray,
              **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
    """The index's own filter during traversal (faiss ``IDSelector``, hnswlib ``filter=``)."""
    index = target.require_index("prefilter")
    return index.search(queries, k, allowed=allowed, **query_params)


def postfilter(target: FilterTarget, queries: np.ndarray, k: int, allowed: np.ndarray, *,
               overfetch: int = 10, **query_params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Search ``k * overfetch`` without a filter, drop disallowed ids, keep the first ``k``."""
    if overfetch < 1:
        raise WorkbenchError(f"overfetch must be a positive integer, got {overfetch}")
    allowed = _check_allowed(allowed, target.ntotal)
    index = target.require_index("postfilter")
    fetched_d, fetched = index.search(queries, min(k * overfetch, index.ntotal), **query_params)
    pos = np.minimum(np.searchsorted(allowed, fetched), allowed.size - 1)
    keep = (fetched >= 0) & (allowed[pos] == fetched)
    rank = np.cumsum(keep, axis=1) - 1
    rows, cols = np.nonzero(keep & (rank < k))
    distances = np.full((len(fetched), k), target.missing_distance(), dtype=np.float32)
    ids = np.full((len(fetched), k), -1, dtype=np.int64)
    distances[rows, rank[rows, cols]] = fetched_d[rows, cols]
    ids[rows, rank[rows, cols]] = fetched[rows, cols]
    return distances, ids


STRATEGIES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "prefilter": prefilter,
    "postfilter": postfilter,
    "exact_subset": exact_subset,
}


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------

def filtered_recall(target: FilterTarget, queries: np.ndarray, ids: np.ndarray,
                    truth: tuple[np.ndarray, np.ndarray], allowed: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query recall@k against the filtered ground truth, tie-aware and by id overlap.

    The denominator is ``min(k, len(allowed))``: a selection smaller than ``k`` cannot fill ``k``. A
    returned id counts (tie-aware) when it is allowed and its recomputed distance is within the k-th
    true distance plus 1e-3 (ann-benchmarks). ``truth`` is ``exact_subset``'s ``(distances, ids)`` for
    the same queries, ``k`` and ``allowed``. Duplicate ids in one result are an error.
    """
    true_distances, true_ids = truth
    ids = np.asarray(ids)[:, :k]
    n_true = min(k, allowed.size)
    sorted_ids = np.sort(ids, axis=1)
    dup = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    if dup.any():
        q = int(np.nonzero(dup.any(axis=1))[0][0])
        raise WorkbenchError(f"query {q}: result repeats id {int(sorted_ids[q, 1:][dup[q]][0])}")
    pos = np.minimum(np.searchsorted(allowed, ids), allowed.size - 1)
    is_allowed = (ids >= 0) & (allowed[pos] == ids)
    kth = true_distances[:, n_true - 1][:, None]
    found = target.distances(queries, ids)
    close = found <= kth + TIE_EPS if target.metric == "l2" else found >= kth - TIE_EPS
    tie_aware = (is_allowed & close).sum(axis=1) / n_true
    overlap = np.array([np.intersect1d(r[r >= 0], t[:n_true]).size for r, t in zip(ids, true_ids)]) / n_true
    return np.minimum(tie_aware, 1.0), overlap


@dataclass
class IndexUnderTest:
    """A built index and the query parameters to search it with, named for tables and plots."""

    label: str
    index: "VectorIndex"
    query_params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.index.family


def filtered_sweep(base: np.ndarray, queries: np.ndarray, metric: str, metadata: Metadata,
                   indexes: Sequence[IndexUnderTest], *, k: int = 10,
                   selectivities: Sequence[float] = DEFAULT_SELECTIVITIES,
                   overfetch: Sequence[int] = DEFAULT_OVERFETCH,
                   strategies: Iterable[str] = ("prefilter", "postfilter", "exact_subset"),
                   threads: int = 1, runs: int = 3, warmup: int = 10, dataset: str = "",
                   sink: "ResultsSink | None" = None, progress: bool = True) -> pd.DataFrame:
    """Recall, short results and single-query latency per selectivity, strategy and index.

    Each selectivity ``s`` selects ids with ``u < s`` from ``metadata``; ``exact_subset`` (index
    ``"exact"``) gives the ground truth and one row of its own. Queries run one at a time on ``threads``
    threads (BLAS and OpenMP pools limited too, for the exact subset), timed as the ANN harness does:
    ``warmup`` untimed queries, then the best of ``runs`` passes (QPS = queries / wall time of that pass,
    p50/p95 over its queries). ``frac_short`` is the share of queries with fewer than
    ``min(k, n_allowed)`` results; ``select_ms`` the time DuckDB took to evaluate the predicate (once per
    selectivity). Each row goes to ``sink.point`` as it is measured (``workbench.bench.sinks``).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from workbench.bench.harness import time_single_queries

    strategies = list(strategies)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise WorkbenchError(f"unknown strategy {unknown[0]!r}; expected one of {', '.join(STRATEGIES)}")
    if metadata.n != len(base):
        raise WorkbenchError(f"metadata table {metadata.table!r} has {metadata.n} rows but the base has "
                             f"{len(base)} vectors")
    if len(queries) == 0:
        raise WorkbenchError("the query set is empty")
    target = FilterTarget(base, metric)
    queries = target.prepare(queries)
    rows_in = [queries[i:i + 1] for i in range(len(queries))]
    points: list[tuple[float, str, IndexUnderTest | None, int | None]] = []
    for s in selectivities:
        if "exact_subset" in strategies:
            points.append((s, "exact_subset", None, None))
        for entry in indexes:
            if "prefilter" in strategies:
                points.append((s, "prefilter", entry, None))
            if "postfilter" in strategies:
                points.extend((s, "postfilter", entry, f) for f in overfetch)
    for entry in indexes:
        entry.index.set_threads(threads)

    rows: list[dict[str, Any]] = []
    truth: dict[float, tuple[np.ndarray, tuple[np.ndarray, np.ndarray], str, float]] = {}
    with threadpool_limits(limits=threads):
        for s, strategy, entry, f in tqdm(points, desc=f"filtered {dataset}".strip(), disable=not progress):
            if s not in truth:
                predicate = selectivity_predicate(s)
                t0 = time.perf_counter()
                allowed = metadata.select(predicate)
                select_ms = (time.perf_counter() - t0) * 1e3
                truth[s] = (allowed, exact_subset(target, queries, k, allowed), predicate, select_ms)
            allowed, exact, predicate, select_ms = truth[s]
            tgt = target if entry is None else target.with_index(entry.index)
            params = {} if entry is None else dict(entry.query_params)
            options = dict(params, overfetch=f) if f is not None else params
            fn = STRATEGIES[strategy]
            walls, seconds, results = time_single_queries(lambda q: fn(tgt, q, k, allowed, **options)[1],
                                                          rows_in, runs, warmup)
            ids = np.vstack(results)
            recall, recall_ids = filtered_recall(target, queries, ids, exact, allowed, k)
            n_results = (ids >= 0).sum(axis=1)
            pos = np.minimum(np.searchsorted(allowed, ids), allowed.size - 1)
            row = {
                "dataset": dataset, "metric": metric, "n_base": len(base), "n_queries": len(queries),
                "k": k, "threads": threads, "selectivity": float(s), "predicate": predicate,
                "n_allowed": int(allowed.size), "selectivity_actual": allowed.size / len(base),
                "select_ms": select_ms,
                "index": "exact" if entry is None else entry.label,
                "family": "exact" if entry is None else entry.family,
                "query_params": _params_text(params), "strategy": strategy, "overfetch": f,
                "recall": float(recall.mean()), "recall_ids": float(recall_ids.mean()),
                "frac_short": float((n_results < min(k, allowed.size)).mean()),
                "mean_results": float(n_results.mean()),
                "n_disallowed": int(((ids >= 0) & (allowed[pos] != ids)).sum()),
                "p50_ms": float(np.percentile(seconds, 50) * 1e3),
                "p95_ms": float(np.percentile(seconds, 95) * 1e3),
                "qps": float(len(queries) / min(walls)),
            }
            rows.append(row)
            if sink is not None:
                sink.point(row)
    frame = pd.DataFrame(rows)
    frame["overfetch"] = frame["overfetch"].astype("Int64")
    return frame


def _params_text(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def curve_label(row: Mapping[str, Any]) -> str:
    """One name per measured curve: index, strategy and (for postfilter) over-fetch."""
    if row["strategy"] == "exact_subset":
        return "exact subset"
    label = f"{row['index']} {row['strategy']}"
    return label + f" x{int(row['overfetch'])}" if row["strategy"] == "postfilter" else label


def collapse_points(frame: pd.DataFrame, min_recall: float = 0.9) -> dict[str, float | None]:
    """For each curve, the largest swept selectivity at which mean recall falls below ``min_recall``."""
    out: dict[str, float | None] = {}
    for label, group in frame.assign(curve=frame.apply(curve_label, axis=1)).groupby("curve", sort=True):
        low = group.loc[group["recall"] < min_recall, "selectivity"]
        out[str(label)] = float(low.max()) if len(low) else None
    return out


def recommend(frame: pd.DataFrame, min_recall: float = 0.9) -> pd.DataFrame:
    """Per selectivity, the fastest curve (lowest median latency) whose recall is at least ``min_recall``.

    The median ranks them, not QPS (queries / wall time of a pass): on a shared machine a few stalled
    calls move a pass's wall time.
    """
    curves = frame.assign(curve=frame.apply(curve_label, axis=1))
    good = curves[curves["recall"] >= min_recall]
    best = good.loc[good.groupby("selectivity")["p50_ms"].idxmin()]
    return best[["selectivity", "curve", "recall", "frac_short", "p50_ms", "qps"]].reset_index(drop=True)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to Parquet atomically."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# Tracking seam
# --------------------------------------------------------------------------------------------

_PARAM_KEYS = ("dataset", "metric", "index", "family", "strategy", "overfetch", "query_params",
               "selectivity", "predicate", "k", "threads", "n_queries", "n_base")
_METRIC_KEYS = ("recall", "recall_ids", "frac_short", "mean_results", "n_disallowed", "p50_ms", "p95_ms",
                "qps", "n_allowed", "selectivity_actual", "select_ms")


def tracking_sink() -> "ResultsSink":
    """The ANN harness's tracking sink (parent run per sweep, fail-soft), logging filtered-search rows."""
    from workbench.bench.sinks import TrackingSink

    class FilteredTrackingSink(TrackingSink):
        def point(self, row: dict[str, Any]) -> None:
            if self._tracking is None:  # tracking unavailable: the harness sink has warned
                return
            self._tracking.log_run(
                experiment=self.experiment, run_name=f"filtered {curve_label(row)} s={row['selectivity']}",
                params={key: row[key] for key in _PARAM_KEYS if row.get(key) is not None},
                metrics={key: float(row[key]) for key in _METRIC_KEYS},
                tags={"kind": "filtered-search", "family": row["family"]}, dataset=self._dataset,
                command=self.command)

    return FilteredTrackingSink(command="workbench filtered")


# --------------------------------------------------------------------------------------------
# The whole run: build, sweep, store, plot
# --------------------------------------------------------------------------------------------

def default_specs(n: int) -> list[str]:
    """Flat (pre-filter is then exact), faiss HNSW, faiss IVF with about sqrt(n) lists, and hnswlib."""
    nlist = int(min(1024, max(8, 2 ** round(math.log2(math.sqrt(n))))))
    return ["faiss:Flat", "faiss:HNSW32,Flat?efSearch=64", f"faiss:IVF{nlist},Flat?nprobe=16",
            "hnswlib:M=16,ef_construction=200?ef=64"]


def build_indexes(base: np.ndarray, metric: str, specs: Sequence[str], threads: int = 1,
                  progress: bool = True) -> list[IndexUnderTest]:
    """Parse and build each SPEC (``workbench.index.spec``); one entry per point of its query sweep."""
    from tqdm.auto import tqdm

    from workbench.index.spec import parse_spec

    parsed = [parse_spec(text) for text in specs]  # all errors before any build
    entries = []
    for spec in tqdm(parsed, desc="building indexes", disable=not progress):
        index = spec.make(metric)
        index.set_threads(threads)
        index.build(base)
        for point in spec.points():
            label = spec.label + ("?" + _params_text(point) if point else "")
            entries.append(IndexUnderTest(label, index, point))
    return entries


def run_filtered(base: np.ndarray, queries: np.ndarray, metric: str, out_dir: str | Path, *,
                 specs: Sequence[str] | None = None, k: int = 10,
                 selectivities: Sequence[float] = DEFAULT_SELECTIVITIES,
                 overfetch: Sequence[int] = DEFAULT_OVERFETCH, threads: int = 1, runs: int = 3, seed: int = 0,
                 dataset: Mapping[str, Any] | None = None, track: bool = True,
                 sink: "ResultsSink | None" = None, progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build the indexes, sweep selectivity, and write ``filtered.parquet``, the plots and ``summary.json``.

    Attributes are ``Metadata.synthetic(len(base), seed)``. ``dataset`` (``name``, ``digest``, ``source``)
    names the data in tables, plots and tracking; with ``track`` the sweep is a parent run in the
    ``index-benchmarks`` experiment and each row a child (fail-soft); ``sink`` (e.g. the harness's
    ``CollectingSink`` in tests) replaces that.
    """
    from workbench.bench.filtered_plots import plot_sweep, recall_table
    from workbench.io import atomic_write_json

    out_dir = Path(out_dir)
    for s in selectivities:
        selectivity_predicate(s)  # reject bad values before building anything
    if any(int(f) != f or f < 1 for f in overfetch):
        raise WorkbenchError(f"over-fetch factors must be positive integers, got {list(overfetch)}")
    info = dict(dataset or {"name": "vectors"})
    name = str(info.get("name", "vectors"))
    specs = list(specs) if specs else default_specs(len(base))
    metadata = Metadata.synthetic(len(base), seed=seed, table=name)
    indexes = build_indexes(base, metric, specs, threads=threads, progress=progress)
    sink = sink if sink is not None else tracking_sink() if track else None
    params = {"k": k, "specs": " ".join(specs), "selectivities": ",".join(map(str, selectivities)),
              "overfetch": ",".join(map(str, overfetch)), "threads": threads, "runs": runs,
              "n_queries": len(queries)}
    tracked = {key: str(v) for key, v in info.items() if key in ("name", "digest", "source")}
    with sink.sweep(f"filtered {name}", params, tracked) if sink is not None else contextlib.nullcontext():
        frame = filtered_sweep(base, queries, metric, metadata, indexes, k=k, selectivities=selectivities,
                               overfetch=overfetch, threads=threads, runs=runs, dataset=name, sink=sink,
                               progress=progress)
    metadata.close()
    write_parquet(frame, out_dir / "filtered.parquet")
    plots = plot_sweep(frame, out_dir)
    table = recall_table(frame)
    summary = {
        "dataset": info, "metric": metric, "k": k, "threads": threads, "n_base": len(base),
        "n_queries": len(queries), "specs": specs, "rows": len(frame),
        "recall": {curve: {c: table.loc[curve, c] for c in table.columns} for curve in table.index},
        "collapse_below_recall_0.9": collapse_points(frame),
        "fastest_at_recall_0.9": recommend(frame).to_dict("records"),
        "files": [str(out_dir / "filtered.parquet"), *map(str, plots)],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return frame, summary
