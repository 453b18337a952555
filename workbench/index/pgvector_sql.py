"""pgvector's vocabulary for ``PgvectorIndex``: kinds, storage types, limits, parameters, the SQL text and
the COPY BINARY row layout (vectors and attribute columns).

From pgvector 0.8's README (https://github.com/pgvector/pgvector): HNSW ``WITH (m, ef_construction)``
(2 <= m <= 100, 4 <= ef_construction <= 1000, ef_construction >= 2 m) and ``hnsw.ef_search``; IVFFlat
``WITH (lists)`` and ``ivfflat.probes``; iterative index scans since 0.8 (``hnsw.iterative_scan`` off |
strict_order | relaxed_order with ``hnsw.max_scan_tuples``; ``ivfflat.iterative_scan`` off | relaxed_order
with ``ivfflat.max_probes``). Indexes hold ``vector`` up to 2,000 dimensions, ``halfvec`` up to 4,000 and
``bit`` up to 64,000; a ``vector`` column holds up to 16,000.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import psycopg

from workbench.errors import DatasetError, IndexSpecError

KINDS = ("hnsw", "ivfflat", "exact")
TYPES = ("vector", "halfvec", "bit")
INDEX_MAX_DIMS = {"vector": 2000, "halfvec": 4000, "bit": 64000}
COLUMN_MAX_DIMS = 16000

#: accepted query parameter names and their types (the SPEC grammar parses sweep values with these)
QUERY_PARAMS: dict[str, type] = {"ef_search": int, "probes": int, "rerank": int, "iterative_scan": str,
                                 "max_scan_tuples": int, "max_probes": int}
#: per kind: query parameter -> (server setting, pgvector's default)
SETTINGS: dict[str, dict[str, tuple[str, Any]]] = {
    "hnsw": {"ef_search": ("hnsw.ef_search", 40), "iterative_scan": ("hnsw.iterative_scan", "off"),
             "max_scan_tuples": ("hnsw.max_scan_tuples", 20000)},
    "ivfflat": {"probes": ("ivfflat.probes", 1), "iterative_scan": ("ivfflat.iterative_scan", "off"),
                "max_probes": ("ivfflat.max_probes", 32768)},
    "exact": {},
}
ITERATIVE = {"hnsw": ("off", "strict_order", "relaxed_order"), "ivfflat": ("off", "relaxed_order")}
RANGES = {"ef_search": (1, 1000), "probes": (1, 32768), "max_probes": (1, 32768),
          "max_scan_tuples": (1, 2**31 - 1), "rerank": (1, 1_000_000)}
#: candidates re-ranked for type=bit unless swept (= ef_search's default: every candidate HNSW returns)
RERANK_DEFAULT = 40

_SHAPE = {"hnsw": {"m": 16, "ef_construction": 64, "type": "vector"}, "ivfflat": {"lists": 100, "type": "vector"},
          "exact": {}}
#: settings that change build time, not the index; recorded as build parameters
BUILD_SETTINGS = {"maintenance_work_mem": "512MB", "max_parallel_maintenance_workers": 2}
_INT_RANGES = {"m": (2, 100), "ef_construction": (4, 1000), "lists": (1, 32768),
               "max_parallel_maintenance_workers": (0, 1024)}
_MEMORY = re.compile(r"[1-9]\d*(kB|MB|GB|TB)")
OPERATOR = {"cosine": "<=>", "ip": "<#>", "l2": "<->"}


def canonical_build(kind: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    """``{"kind": ..., every build parameter}`` with pgvector's defaults filled in; errors quote ``where``."""
    if kind not in KINDS:
        raise IndexSpecError(f"{where}: pgvector kind must be one of {', '.join(KINDS)}, got {kind!r}")
    accepted = {**_SHAPE[kind], **(BUILD_SETTINGS if kind != "exact" else {})}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise IndexSpecError(f"{where}: {', '.join(unknown)} is not a build parameter of pgvector {kind}; "
                             f"accepted: {', '.join(accepted) or 'none'}")
    out: dict[str, Any] = {"kind": kind, **accepted}
    for name, value in params.items():
        if name == "type":
            if value not in TYPES:
                raise IndexSpecError(f"{where}: type must be one of {', '.join(TYPES)}, got {value!r}")
        elif name == "maintenance_work_mem":
            value = str(value).replace(" ", "")
            if not _MEMORY.fullmatch(value):
                raise IndexSpecError(f"{where}: maintenance_work_mem must be a PostgreSQL memory size such as "
                                     f"512MB or 2GB, got {value!r}")
        else:
            lo, hi = _INT_RANGES[name]
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise IndexSpecError(f"{where}: {name} must be an integer, got {value!r}") from None
            if not lo <= value <= hi:
                raise IndexSpecError(f"{where}: {name} must lie in [{lo}, {hi}], got {value}")
        out[name] = value
    if kind == "hnsw" and out["ef_construction"] < 2 * out["m"]:
        raise IndexSpecError(f"{where}: ef_construction must be at least 2 * m = {2 * out['m']}, "
                             f"got {out['ef_construction']}")
    return out


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """Build parameters from the text between ``pgvector:`` and ``?``: a kind first, then ``name=value``,
    e.g. ``hnsw,m=16,ef_construction=64,type=halfvec`` or ``ivfflat,lists=200`` or ``exact``."""
    parts = [p.strip() for p in body.split(",") if p.strip()]
    where = f"index spec {spec_text!r}"
    if not parts:
        raise IndexSpecError(f"{where}: pgvector needs a kind, one of {', '.join(KINDS)} (e.g. pgvector:hnsw,m=16)")
    params: dict[str, Any] = {}
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise IndexSpecError(f"{where}: expected name=value after the kind, got {part!r}")
        if name.strip() in params:
            raise IndexSpecError(f"{where}: build parameter {name.strip()} given twice")
        params[name.strip()] = value.strip()
    return canonical_build(parts[0], params, where)


def build_text(build: dict[str, Any]) -> str:
    """The spec body ``hnsw,m=16,ef_construction=64`` that ``parse_build`` reads back: the index shape, plus
    the build settings that differ from their defaults (they change build time, not the index)."""
    kind = build["kind"]
    shown = [f"{k}={v}" for k, v in build.items() if k in _SHAPE[kind] and not (k == "type" and v == "vector")]
    shown += [f"{k}={build[k]}" for k, v in BUILD_SETTINGS.items() if k in build and build[k] != v]
    return ",".join([kind, *shown])


def check_query_params(kind: str, vtype: str, params: dict[str, Any], label: str) -> dict[str, Any]:
    """Query parameters checked against what ``kind``/``vtype`` takes, their types and pgvector's ranges."""
    unknown = sorted(set(params) - set(QUERY_PARAMS))
    if unknown:
        raise IndexSpecError(f"unknown query parameter(s) {', '.join(unknown)} for {label}; "
                             f"accepted: {', '.join(QUERY_PARAMS)}")
    takes = [*SETTINGS[kind], *(["rerank"] if vtype == "bit" else [])]
    extra = sorted(set(params) - set(takes))
    if extra:
        raise IndexSpecError(f"query parameter(s) {', '.join(extra)} do not apply to {label}; "
                             f"it takes: {', '.join(takes) or 'none'}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == "iterative_scan":
            if value not in ITERATIVE[kind]:
                raise IndexSpecError(f"iterative_scan of {label} must be one of {', '.join(ITERATIVE[kind])}, "
                                     f"got {value!r}")
            out[name] = value
            continue
        lo, hi = RANGES[name]
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer()
                or not lo <= value <= hi):
            raise IndexSpecError(f"query parameter {name}={value!r} of {label} must be an integer in [{lo}, {hi}]")
        out[name] = int(value)
    return out


def index_sql(table: str, kind: str, vtype: str, metric: str, dim: int, build: dict[str, Any]) -> str:
    """``CREATE INDEX`` for the build configuration (an expression index for halfvec and bit)."""
    ops = {"cosine": "cosine", "ip": "ip", "l2": "l2"}[metric]
    expr, opclass = {"vector": ("v", f"vector_{ops}_ops"),
                     "halfvec": (f"(v::halfvec({dim}))", f"halfvec_{ops}_ops"),
                     "bit": (f"(binary_quantize(v)::bit({dim}))", "bit_hamming_ops")}[vtype]
    with_ = (f"m = {build['m']}, ef_construction = {build['ef_construction']}" if kind == "hnsw"
             else f"lists = {build['lists']}")
    return f"CREATE INDEX ON {table} USING {kind} ({expr} {opclass}) WITH ({with_})"


def query_sql(table: str, vtype: str, metric: str, dim: int, k: int, params: dict[str, Any],
              distances: bool, filtered: bool, where: str = "") -> str:
    """The top-``k`` statement: parameter ``%(q)b`` is the query vector, ``%(allowed)b`` the allowed ids,
    ``where`` a further SQL condition (on attribute columns).

    ``distances`` adds the exact distance by the stored float32 vector. type=bit takes the ``rerank``
    nearest by Hamming distance of the binary codes and orders them by the exact distance (pgvector's
    "Binary Quantization" pattern); with ``relaxed_order`` the rows come back slightly out of order, so
    they are re-sorted in an outer query (pgvector's README)."""
    op = OPERATOR[metric]
    exact = f"v {op} %(q)b"
    conditions = (["id = ANY(%(allowed)b)"] if filtered else []) + ([where] if where else [])
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    if vtype == "bit":
        inner = (f"SELECT id, v FROM {table}{where} ORDER BY binary_quantize(v)::bit({dim}) <~> "
                 f"binary_quantize(%(q)b) LIMIT {params.get('rerank', RERANK_DEFAULT)}")
        return f"SELECT id{', ' + exact if distances else ''} FROM ({inner}) c ORDER BY {exact} LIMIT {k}"
    order = exact if vtype == "vector" else f"v::halfvec({dim}) {op} %(q)b::halfvec({dim})"
    if params.get("iterative_scan") == "relaxed_order":
        inner = (f"SELECT id, {order} AS o{', ' + exact + ' AS d' if distances else ''} FROM {table}{where} "
                 f"ORDER BY o LIMIT {k}")
        return f"WITH r AS MATERIALIZED ({inner}) SELECT id{', d' if distances else ''} FROM r ORDER BY o"
    return f"SELECT id{', ' + exact if distances else ''} FROM {table}{where} ORDER BY {order} LIMIT {k}"


# -- COPY ... FORMAT BINARY (PostgreSQL docs, "COPY", binary format) ------------------------------------
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8     # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_COPY_CHUNK_ROWS = 20_000


#: numpy kind -> (PostgreSQL type, COPY BINARY field dtype)
_ATTRIBUTE_TYPES = {"i": ("int8", ">i8"), "u": ("int8", ">i8"), "f": ("float8", ">f8"), "b": ("bool", "?"),
                    "M": ("timestamptz", ">i8")}
#: PostgreSQL type -> the type name the predicate grammar checks literals against (``index.predicate``)
PREDICATE_TYPES = {"int8": "BIGINT", "float8": "DOUBLE", "bool": "BOOLEAN", "timestamptz": "TIMESTAMP",
                   "text": "VARCHAR"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PG_EPOCH_US = 946_684_800_000_000          # 2000-01-01 in microseconds since 1970: PostgreSQL's timestamp zero


def attribute_columns(columns: Mapping[str, np.ndarray]) -> dict[str, tuple[str, np.dtype, np.ndarray]]:
    """Per attribute column: its PostgreSQL type, COPY field dtype and the values as that dtype. Integers,
    floats, booleans and datetimes; text only when every value has the same UTF-8 length (a fixed field),
    as the synthetic attributes have (``workbench.index.metadata``)."""
    out = {}
    for name, values in columns.items():
        if not _IDENT.fullmatch(name) or name in ("id", "v"):
            raise DatasetError(f"attribute column {name!r} is not a usable column name (identifier, not id or v)")
        a = np.asarray(values)
        if a.dtype.kind in "OUS":
            raw = np.array([str(x).encode() for x in a.tolist()], dtype=object)
            widths = {len(b) for b in raw}
            if len(widths) != 1:
                raise DatasetError(f"attribute column {name!r}: text values of {min(widths)} to {max(widths)} "
                                   "bytes; only text of one length can be loaded")
            width = widths.pop()
            out[name] = ("text", np.dtype(f"S{width}"), raw.astype(f"S{width}"))
        elif a.dtype.kind in _ATTRIBUTE_TYPES:
            pg, field = _ATTRIBUTE_TYPES[a.dtype.kind]
            if a.dtype.kind == "M":
                a = a.astype("datetime64[us]").astype(np.int64) - _PG_EPOCH_US
            out[name] = (pg, np.dtype(field), a)
        else:
            raise DatasetError(f"attribute column {name!r} has dtype {a.dtype}; expected numbers, booleans, "
                               "datetimes or text")
    return out


def copy_rows(vectors: np.ndarray, ids: np.ndarray | None = None,
              columns: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """COPY BINARY tuples ``(id int4, v vector, *columns)`` as one structured array (pgvector's binary
    ``vector``: int16 dim, int16 unused, float32 big-endian values); ``ids`` default to row positions,
    ``columns`` as ``attribute_columns`` takes them."""
    n, d = vectors.shape
    attrs = attribute_columns(columns or {})
    fields = [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("v_len", ">i4"), ("dim", ">i2"),
              ("unused", ">i2"), ("v", ">f4", (d,))]
    for name, (_, field, _) in attrs.items():
        fields += [(f"{name}_len", ">i4"), (name, field)]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["fields"], rows["id_len"], rows["v_len"], rows["dim"], rows["unused"] = 2 + len(attrs), 4, 4 + 4 * d, d, 0
    rows["id"] = np.arange(n) if ids is None else ids
    rows["v"] = vectors
    for name, (_, field, values) in attrs.items():
        if len(values) != n:
            raise DatasetError(f"attribute column {name!r} has {len(values)} values for {n} vectors")
        rows[f"{name}_len"], rows[name] = field.itemsize, values
    return rows


def copy_in(conn: psycopg.Connection, table: str, rows: np.ndarray) -> None:
    """Stream ``copy_rows`` output into ``table`` (its columns in that order)."""
    names = [f'"{f}"' for f in rows.dtype.names if f not in ("fields", "dim", "unused") and not f.endswith("_len")]
    with conn.cursor().copy(f"COPY {table} ({', '.join(names)}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.write(_COPY_HEADER)
        for i in range(0, len(rows), _COPY_CHUNK_ROWS):
            copy.write(rows[i:i + _COPY_CHUNK_ROWS].tobytes())
        copy.write(_COPY_TRAILER)
