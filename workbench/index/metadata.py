"""The attribute table of a vector set, in an in-process DuckDB database: one row per vector id.

``Metadata.select(predicate)`` evaluates a predicate (grammar in ``workbench.index.predicate``) and returns
the sorted ids it allows, the ``allowed`` array every index's filtered search takes
(``VectorIndex.search(..., allowed=ids)``).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from workbench.errors import EmptySelectionError, PredicateError
from workbench.index.predicate import compile_predicate

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Metadata:
    """Attributes of a vector set in an in-process DuckDB table: one row per vector id.

    ``id`` (BIGINT) is the vector's row position in the index; the other columns are attributes.
    ``database`` is ``":memory:"`` or a DuckDB file path.
    """

    def __init__(self, frame: pd.DataFrame, table: str = "metadata", database: str | Path = ":memory:") -> None:
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
