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

import io
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.io import atomic_write_bytes

if TYPE_CHECKING:
    import duckdb

    from workbench.index.base import VectorIndex

DEFAULT_SELECTIVITIES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5)
DEFAULT_OVERFETCH = (1, 2, 10)
TIE_EPS = 1e-3  # ann-benchmarks' slack on the k-th true distance

Sink = Callable[[dict[str, Any]], None]


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
        text = m.group(kind)
        if kind == "word" and text.upper() in _KEYWORDS:
            kind, text = "kw", text.upper()
        tokens.append(_Token(kind, text, m.start(kind)))
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

        table = re.sub(r"\W", "_", table)
        if not _IDENT.match(table):
            raise PredicateError(f"table name {table!r} is not an identifier")
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
