"""The offline store: feature views as versioned DuckDB tables, in a file or in memory.

Each view version is a table ``fv_<name>_v<version>`` holding the view's columns (timestamps as naive UTC)
plus ``_wb_row``, the ingestion sequence number: the deterministic tie rule ("last ingested wins") reads it.
A registry table records every version's definition, whether any (key, event time) pair occurs twice (so that
joins can take the fast path when it does not), and the online-store watermarks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.timestamps import to_utc_naive
from workbench.features.view import FeatureView, quote

REGISTRY = "_wb_feature_views"
ROW = "_wb_row"
_INT = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_FLOAT = {"FLOAT", "DOUBLE", "REAL"}


def _family(t: str) -> str:
    t = t.upper()
    if t in _INT:
        return "int"
    if t in _FLOAT or t.startswith("DECIMAL"):
        return "float"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return t


def _normalise_type(t: str) -> str:
    """Inferred types widened so later batches fit: any integer -> BIGINT, any float -> DOUBLE."""
    fam = _family(t)
    return {"int": "BIGINT", "float": "DOUBLE"}.get(fam, t)


def _accepts(target: str, source: str) -> bool:
    tf, sf = _family(target), _family(source)
    return source == '"NULL"' or sf == tf or (tf == "float" and sf == "int")


def _view_to_json(view: FeatureView) -> str:
    d = asdict(view)
    d["ttl"] = None if view.ttl is None else view.ttl.total_seconds()
    d["entities"], d["features"] = list(view.entities), list(view.features)
    return json.dumps(d, sort_keys=True)


def _view_from_json(text: str) -> FeatureView:
    d = json.loads(text)
    d["ttl"] = None if d["ttl"] is None else timedelta(seconds=d["ttl"])
    return FeatureView(**d)


class OfflineStore:
    """Versioned feature tables in DuckDB. ``path=None`` keeps everything in memory."""

    def __init__(self, path: str | os.PathLike | None = None, *, memory_limit: str | None = None,
                 temp_directory: str | os.PathLike | None = None, threads: int | None = None):
        self.path = None if path is None else Path(path)
        self.con = duckdb.connect(":memory:" if path is None else str(path))
        # Plain UTC arithmetic everywhere; TIMESTAMPTZ arithmetic would follow a session zone's DST.
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")
        if memory_limit:
            try:
                self.con.execute(f"SET memory_limit = '{memory_limit}'")
            except duckdb.Error as exc:  # e.g. "1XB": say which setting, not a parser error
                raise FeatureStoreError(f"memory_limit {memory_limit!r} is not a memory size such as 1GB or "
                                        f"512MiB ({str(exc).splitlines()[0]})") from None
        if temp_directory:
            self.con.execute(f"SET temp_directory = '{Path(temp_directory)}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute(f"""CREATE TABLE IF NOT EXISTS {REGISTRY} (
            name VARCHAR, version INTEGER, definition VARCHAR, ties BOOLEAN, next_row BIGINT,
            materialized_until TIMESTAMP, materialized_row BIGINT, PRIMARY KEY (name, version))""")

    # ---- registry -------------------------------------------------------------------------------------
    def _latest(self, name: str) -> tuple[int, FeatureView] | None:
        rows = self.con.execute(f"SELECT version, definition FROM {REGISTRY} WHERE name = ? "
                                "ORDER BY version DESC LIMIT 1", [name]).fetchall()
        return (rows[0][0], _view_from_json(rows[0][1])) if rows else None

    def view(self, name: str) -> FeatureView:
        """The latest version's definition."""
        latest = self._latest(name)
        if latest is None:
            known = [r[0] for r in self.con.execute(f"SELECT DISTINCT name FROM {REGISTRY} ORDER BY 1").fetchall()]
            raise FeatureStoreError(f"unknown feature view {name!r} (known: {known})")
        return latest[1]

    def version(self, name: str) -> int:
        self.view(name)
        return self._latest(name)[0]  # type: ignore[index]

    def versions(self, name: str) -> list[int]:
        return [r[0] for r in self.con.execute(f"SELECT version FROM {REGISTRY} WHERE name = ? ORDER BY 1",
                                               [name]).fetchall()]

    def table(self, name: str, version: int | None = None) -> str:
        """The quoted table holding a view version (the latest by default)."""
        return quote(f"fv_{name}_v{self.version(name) if version is None else version}")

    def state(self, name: str) -> dict[str, Any]:
        row = self.con.execute(f"SELECT ties, next_row, materialized_until, materialized_row FROM {REGISTRY} "
                               "WHERE name = ? AND version = ?", [name, self.version(name)]).fetchall()[0]
        return dict(zip(("ties", "next_row", "materialized_until", "materialized_row"), row))

    def set_state(self, name: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.con.execute(f"UPDATE {REGISTRY} SET {sets} WHERE name = ? AND version = ?",
                         [*values.values(), name, self.version(name)])

    def names(self) -> list[str]:
        return [r[0] for r in self.con.execute(f"SELECT DISTINCT name FROM {REGISTRY} ORDER BY 1").fetchall()]

    # ---- apply and ingest -----------------------------------------------------------------------------
    def apply(self, view: FeatureView, source: pd.DataFrame | str | os.PathLike | None = None) -> int:
        """Register ``view`` and ingest ``source`` (a DataFrame or a Parquet path) if given; returns the version.

        Column types come from ``view.dtypes``, else from the current version when the columns are unchanged,
        else from ``source``. The same schema keeps the current version (a ttl change is recorded in place); a
        different one (keys, features, their types, time columns) makes a new, empty version, leaving older
        versions readable.
        """
        rel, latest = None, self._latest(view.name)
        if view.dtypes is None:
            same_columns = latest is not None and latest[1].columns == view.columns
            if same_columns:  # a batch never re-types a view; explicit dtypes do
                view = view.with_dtypes(latest[1].dtypes)
            elif source is None:
                raise FeatureStoreError(f"feature view {view.name!r}: give dtypes or a source to infer them from")
            else:
                rel = self._source(view, source)
                types = dict(zip(rel.columns, map(str, rel.types)))
                view = view.with_dtypes({c: _normalise_type(types[c]) for c in (*view.entities, *view.features)})
        if latest is not None and latest[1].schema() == view.schema():
            version = latest[0]
            self.con.execute(f"UPDATE {REGISTRY} SET definition = ? WHERE name = ? AND version = ?",
                             [_view_to_json(view), view.name, version])
        else:
            version = 1 if latest is None else latest[0] + 1
            cols = [f"{quote(c)} {view.dtypes[c]}" for c in (*view.entities, *view.features)]
            cols += [f"{quote(view.timestamp_field)} TIMESTAMP NOT NULL"]
            if view.created_timestamp_column:
                cols += [f"{quote(view.created_timestamp_column)} TIMESTAMP"]
            cols += [f"{ROW} BIGINT NOT NULL"]
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(f"CREATE TABLE {quote(f'fv_{view.name}_v{version}')} ({', '.join(cols)})")
                self.con.execute(f"INSERT INTO {REGISTRY} VALUES (?, ?, ?, false, 0, NULL, NULL)",
                                 [view.name, version, _view_to_json(view)])
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        if source is not None:
            self.ingest(view.name, source if rel is None else rel)
        return version

    def _source(self, view: FeatureView, source: Any) -> duckdb.DuckDBPyRelation:
        """The source as a relation with timestamps normalised and a source-order column ``_wb_src``."""
        if isinstance(source, duckdb.DuckDBPyRelation):
            return source
        if isinstance(source, pd.DataFrame):
            missing = [c for c in view.columns if c not in source.columns]
            if missing:
                raise FeatureStoreError(f"ingest into {view.name!r}: source lacks column(s) {missing} "
                                        f"(has {list(source.columns)})")
            df = source[list(view.columns)].copy()
            for c in (view.timestamp_field, view.created_timestamp_column):
                if c:
                    df[c] = to_utc_naive(df[c], f"{view.name}.{c}")
            df["_wb_src"] = range(len(df))
            return self.con.from_df(df)
        path = Path(source)
        if not path.is_file():
            raise FeatureStoreError(f"ingest into {view.name!r}: no such file {path}")
        rel = self.con.read_parquet(str(path), file_row_number=True)
        missing = [c for c in view.columns if c not in rel.columns]
        if missing:
            raise FeatureStoreError(f"ingest into {view.name!r}: {path} lacks column(s) {missing} (has {rel.columns})")
        types = dict(zip(rel.columns, map(str, rel.types)))
        sel = []
        for c in view.columns:
            if c in (view.timestamp_field, view.created_timestamp_column) and types[c] == "TIMESTAMP WITH TIME ZONE":
                sel.append(f"timezone('UTC', {quote(c)}) AS {quote(c)}")
            else:
                sel.append(quote(c))
        return rel.select(", ".join(sel) + ", file_row_number AS _wb_src")

    def ingest(self, name: str, source: pd.DataFrame | str | os.PathLike | duckdb.DuckDBPyRelation) -> int:
        """Append rows to the latest version of view ``name`` in one transaction; returns the row count.

        Missing columns, a type that does not fit the schema, or a NULL event time raise before anything is
        written; a failure while writing rolls the whole batch back. Extra source columns are ignored.
        """
        view = self.view(name)
        rel = self._source(view, source)
        types = dict(zip(rel.columns, map(str, rel.types)))
        for c in view.columns:
            if c not in types:
                raise FeatureStoreError(f"ingest into {name!r}: source lacks column {c!r} (has {list(types)})")
        for c in (*view.entities, *view.features):
            if not _accepts(view.dtypes[c], types[c]):
                raise FeatureStoreError(f"ingest into {name!r}: column {c!r} has type {types[c]}, "
                                        f"the view's schema says {view.dtypes[c]}")
        for c in (view.timestamp_field, view.created_timestamp_column):
            if c and _family(types[c]) not in ("timestamp", "DATE", '"NULL"'):
                raise FeatureStoreError(f"ingest into {name!r}: column {c!r} has type {types[c]}, expected a timestamp")
        if "NS" in types[view.timestamp_field] or (view.created_timestamp_column
                                                    and "NS" in types[view.created_timestamp_column]):
            raise FeatureStoreError(f"ingest into {name!r}: nanosecond timestamps; convert to microseconds")
        src = f"_wb_src_{id(rel)}"
        self.con.register(src, rel)
        ts = quote(view.timestamp_field)
        try:
            nulls = self.con.execute(f"SELECT min(_wb_src) FROM {src} WHERE {ts} IS NULL").fetchall()[0][0]
            if nulls is not None:
                raise FeatureStoreError(f"ingest into {name!r}: row {nulls} has no {view.timestamp_field}")
            return self._insert(view, src)
        finally:
            self.con.unregister(src)

    def _insert(self, view: FeatureView, src: str) -> int:
        table, state = self.table(view.name), self.state(view.name)
        keys = [quote(k) for k in view.entities]
        pair = ", ".join([*keys, quote(view.timestamp_field)])
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        cols = ", ".join(quote(c) for c in view.columns)
        casts = ", ".join(f"CAST({quote(c)} AS {view.dtypes[c]})" for c in (*view.entities, *view.features))
        casts += ", " + ", ".join(f"CAST({quote(c)} AS TIMESTAMP)" for c in view.columns[len(view.entities)
                                                                                        + len(view.features):])
        self.con.execute("BEGIN TRANSACTION")
        try:
            ties = state["ties"] or bool(self.con.execute(
                f"SELECT EXISTS (SELECT 1 FROM {src} WHERE {not_null} GROUP BY {pair} HAVING count(*) > 1)"
                f" OR EXISTS (SELECT 1 FROM {src} s JOIN {table} t USING ({pair}))").fetchall()[0][0])
            n = self.con.execute(f"INSERT INTO {table} ({cols}, {ROW}) SELECT {casts}, {state['next_row']} + _wb_src "
                                 f"FROM {src}").fetchall()[0][0]
            nmax = self.con.execute(f"SELECT coalesce(max(_wb_src) + 1, 0) FROM {src}").fetchall()[0][0]
            self.con.execute(f"UPDATE {REGISTRY} SET ties = ?, next_row = next_row + ? WHERE name = ? AND version = ?",
                             [ties, nmax, view.name, self.version(view.name)])
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self.con.execute("ROLLBACK")
            raise FeatureStoreError(f"ingest into {view.name!r} failed, nothing written: {exc}") from exc
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return int(n)

    def close(self) -> None:
        self.con.close()
