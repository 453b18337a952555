"""The online store on Redis, behind the API of the DuckDB one (``workbench.features.online``).

Layout: one hash per (view version, entity key), ``<ns>:<view>:v<version>:<key>`` where ``<key>`` is the JSON
list of the key values, typed by the view's dtypes (``[1,"a"]``): strings are quoted and escaped, so two
different composite keys never share a hash. Fields: ``_t`` event time and ``_c`` created time (integer
microseconds since the epoch, ``_c`` empty when NULL), ``_r`` the ingestion number, and per feature
``f:<name>`` its JSON value. The incremental watermark lives beside them (``<ns>:<view>:v<version>:_wm``).

Materialisation selects each key's best candidate in DuckDB, then a Lua script (atomic on the server) writes
a hash only when its (event time, created time, ingestion number) -- the offline join's order, NULL created
time lowest -- is greater than the stored one. So the newest row wins whatever the order of concurrent
writers or backfills, repeating a window writes nothing, and every hash is written whole or not at all
(Redis runs a script's writes as one unit, also in its append-only file). The ttl is checked at read time
exactly as the DuckDB store does (present / missing / expired). A read is one pipeline for the whole
request, planned once (``online.ServingPlan``).

The store is handed a client (``redis.Redis``) by its caller: the feature store imports no server code
(``workbench.services.redis`` starts one). Keys of one call may hash to different cluster slots, so a
Redis Cluster is not supported.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import redis

from workbench.errors import DatabaseError, FeatureStoreError
from workbench.features.offline import ROW, OfflineStore, _family
from workbench.features.online import (
    MISSING,
    PRESENT,
    OnlineResponse,
    ServingPlan,
    event_window,
    request_rows,
    request_time,
    respond,
    serving_plan,
    unique_keys,
)
from workbench.features.pit import historical_features
from workbench.features.timestamps import to_utc_timestamp
from workbench.features.view import FeatureView, quote

CHUNK = 500           # keys per script call: bounded server time per call, other clients interleave
_EPOCH = pd.Timestamp("1970-01-01")

# ARGV: nfeat, feature field names, then per key: t, c ('' = NULL), r, nfeat JSON values.
_MERGE_LUA = """
local nf = tonumber(ARGV[1])
local pos, written = 2 + nf, 0
local function created(c) if (not c) or c == '' then return -math.huge end return tonumber(c) end
for i = 1, #KEYS do
  local t, c, r = tonumber(ARGV[pos]), created(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local cur = redis.call('HMGET', KEYS[i], '_t', '_c', '_r')
  local newer = true
  if cur[1] then
    local ot, oc, orow = tonumber(cur[1]), created(cur[2]), tonumber(cur[3])
    newer = t > ot or (t == ot and (c > oc or (c == oc and r > orow)))
  end
  if newer then
    local args = {'_t', ARGV[pos], '_c', ARGV[pos + 1], '_r', ARGV[pos + 2]}
    for j = 1, nf do args[#args + 1] = ARGV[1 + j]; args[#args + 1] = ARGV[pos + 2 + j] end
    redis.call('HSET', KEYS[i], unpack(args))
    written = written + 1
  end
  pos = pos + 3 + nf
end
return written
"""


def _us(t: Any) -> int | None:
    """A naive-UTC timestamp as integer microseconds since the epoch (exact in Lua's doubles until 2255)."""
    if t is None or (isinstance(t, float) and math.isnan(t)) or t is pd.NaT:
        return None
    return int((pd.Timestamp(t) - _EPOCH) // pd.Timedelta(microseconds=1))


def _json(v: Any) -> str:
    if isinstance(v, (datetime, pd.Timestamp)):
        return json.dumps(pd.Timestamp(v).isoformat())
    if v is not None and not isinstance(v, (bool, int, float, str)):
        v = float(v) if hasattr(v, "__float__") else str(v)   # Decimal, numpy scalars
    return json.dumps(v)


def _key(prefix: str, view: FeatureView, values: Sequence[Any]) -> str:
    typed = [_key_value(v, view.dtypes[k]) for k, v in zip(view.entities, values)]
    return prefix + json.dumps(typed, separators=(",", ":"), ensure_ascii=False)


def _key_value(v: Any, dtype: str) -> Any:
    fam = _family(dtype)
    if fam == "int":
        return int(v)
    if fam == "float":
        return float(v)
    return v.isoformat() if isinstance(v, (datetime, pd.Timestamp)) else str(v)


@dataclass(frozen=True)
class RedisOnlineResponse(OnlineResponse):
    """An :class:`OnlineResponse`; ``fallback`` is True when Redis was unreachable and the values come from
    the offline point-in-time join at the request time (``reason`` says why). In a fallback the status is
    ``present`` where the join found a non-NULL value, else ``missing`` (the join cannot tell expired)."""

    fallback: bool = False
    reason: str = ""


class RedisOnlineStore:
    """Online feature values in Redis; ``client`` is a ``redis.Redis`` (e.g. ``services.redis.connect()``)."""

    def __init__(self, client: redis.Redis, namespace: str = "wb:online") -> None:
        self.client, self.namespace = client, namespace
        self._merge = client.register_script(_MERGE_LUA)

    def prefix(self, store: OfflineStore, name: str) -> str:
        return f"{self.namespace}:{name}:v{store.version(name)}:"

    def key(self, store: OfflineStore, view: FeatureView, values: Sequence[Any]) -> str:
        """The hash of one entity key (values in ``view.entities`` order)."""
        return _key(self.prefix(store, view.name), view, values)

    def _fail(self, exc: BaseException, doing: str) -> DatabaseError:
        where = self.client.connection_pool.connection_kwargs
        addr = where.get("path") or f"{where.get('host')}:{where.get('port')}"
        return DatabaseError(f"Redis at {addr} unreachable while {doing}: {exc}")

    # ---- materialisation ----------------------------------------------------------------------------
    def _merge_rows(self, store: OfflineStore, view: FeatureView, where: str, params: list[Any]) -> int:
        """Write each key's best row matching ``where`` unless Redis holds a newer one; rows considered."""
        keys = [quote(k) for k in view.entities]
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        created = quote(view.created_timestamp_column) if view.created_timestamp_column else "NULL::TIMESTAMP"
        ts, table, prefix = quote(view.timestamp_field), store.table(view.name), self.prefix(store, view.name)
        con = store.con
        n = con.execute(f"SELECT count(*) FROM {table} WHERE {not_null} AND ({where})", params).fetchall()[0][0]
        cur = con.execute(f"""SELECT {', '.join(keys)}, epoch_us({ts}), epoch_us({created}), {ROW}, {', '.join(map(quote, view.features))}
            FROM {table} WHERE {not_null} AND ({where})
            QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}
                                       ORDER BY {ts} DESC, {created} DESC NULLS LAST, {ROW} DESC) = 1""", params)
        ne, fields = len(view.entities), [f"f:{f}" for f in view.features]
        try:
            while batch := cur.fetchmany(CHUNK):
                hashes, argv = [], [len(fields), *fields]
                for row in batch:
                    hashes.append(_key(prefix, view, row[:ne]))
                    argv += [row[ne], "" if row[ne + 1] is None else row[ne + 1], row[ne + 2]]
                    argv += [_json(v) for v in row[ne + 3:]]
                self._merge(keys=hashes, args=argv)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self._fail(exc, f"materialising {view.name!r}") from None
        return int(n)

    def materialize(self, store: OfflineStore, start: datetime, end: datetime,
                    names: Iterable[str] | None = None) -> dict[str, int]:
        """Merge rows with event time in [start, end] (inclusive); rows considered per view."""
        window = event_window(start, end)
        views = [store.view(name) for name in names or store.names()]
        return {v.name: self._merge_rows(store, v, f"{quote(v.timestamp_field)} BETWEEN ? AND ?", window)
                for v in views}

    def materialize_incremental(self, store: OfflineStore, end: datetime,
                                names: Iterable[str] | None = None) -> dict[str, int]:
        """As the DuckDB store's: everything not merged by a previous incremental run, up to ``end``; the
        watermark is kept in Redis (it is this online store's state) and moved only after the merge."""
        e = to_utc_timestamp(end).to_pydatetime()
        out = {}
        for name in names or store.names():
            view = store.view(name)
            ts, wm = quote(view.timestamp_field), self.prefix(store, name) + "_wm"
            try:
                state = self.client.hgetall(wm)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise self._fail(exc, f"reading the watermark of {name!r}") from None
            if not state:
                where, params, until = f"{ts} <= ?", [e], None
            else:
                until = pd.Timestamp(state[b"until"].decode()).to_pydatetime()
                where, params = f"{ts} <= ? AND ({ts} > ? OR {ROW} > ?)", [e, until, int(state[b"row"])]
            top = store.con.execute(f"SELECT max({ROW}) FROM {store.table(name)}").fetchall()[0][0]
            out[name] = self._merge_rows(store, view, where, params)
            new_until = e if until is None else max(until, e)
            try:
                self.client.hset(wm, mapping={"until": new_until.isoformat(), "row": -1 if top is None else top})
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise self._fail(exc, f"writing the watermark of {name!r}") from None
        return out

    # ---- reads --------------------------------------------------------------------------------------
    def online_features(self, store: OfflineStore, refs: Sequence[str] | ServingPlan,
                        entity_rows: pd.DataFrame | Sequence[Mapping[str, Any]], at: datetime | None = None,
                        full_feature_names: bool = False, fallback: str | None = None) -> RedisOnlineResponse:
        """Serve ``refs`` for ``entity_rows`` at request time ``at`` (default now), as the DuckDB store does:
        one pipeline for the whole request. ``refs`` planned already (``FeatureStore`` caches the plan) means
        no DuckDB query; a list of ``view:feature`` is planned here, against the registry.

        Redis unreachable: a DatabaseError, or with ``fallback="offline"`` the offline join at ``at``,
        flagged in the response."""
        if fallback not in (None, "offline"):
            raise FeatureStoreError(f"fallback must be None or 'offline', got {fallback!r}")
        rows = request_rows(entity_rows)
        if isinstance(refs, ServingPlan):
            plan = refs
            plan.check(store, rows)
        else:
            plan = serving_plan(store, refs, rows, full_feature_names)
        now = request_time(at)
        try:
            fetched = self._fetch(plan, rows)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if fallback is None:
                raise self._fail(exc, "reading online features (pass fallback='offline' to serve the offline "
                                      "join instead)") from None
            return self._from_offline(store, plan, rows, now, exc)
        return respond(plan, rows, _us(now), fetched, RedisOnlineResponse)

    def _fetch(self, plan: ServingPlan, rows: pd.DataFrame) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Per view: event times (int64 us, min = nothing stored) and decoded values; one pipeline in all."""
        pipe, asked = self.client.pipeline(transaction=False), []
        for sv in plan.views:
            v, prefix = sv.view, f"{self.namespace}:{sv.view.name}:v{sv.version}:"
            unique, pos = unique_keys(v, rows)
            fields = ["_t", *(f"f:{f}" for f in sv.features)]
            for key in unique:
                pipe.hmget(_key(prefix, v, key), fields)
            asked.append((sv, len(unique), pos))
        answers = iter(pipe.execute() if len(pipe) else [])
        out = []
        for sv, n, pos in asked:
            mine = [next(answers) for _ in range(n)]
            timestamps = [_family(sv.view.dtypes[f]) == "timestamp" for f in sv.features]
            fts = np.full(len(rows), np.iinfo(np.int64).min, dtype=np.int64)
            got = [np.full(len(rows), None, dtype=object) for _ in sv.features]
            for i in np.flatnonzero(pos >= 0):
                answer = mine[pos[i]]
                if answer[0] is None:
                    continue
                fts[i] = int(answer[0])
                for j, (raw, is_ts) in enumerate(zip(answer[1:], timestamps)):
                    val = None if raw is None else json.loads(raw)
                    got[j][i] = pd.Timestamp(val) if is_ts and val is not None else val
            out.append((fts, got))
        return out

    def _from_offline(self, store: OfflineStore, plan: ServingPlan, rows: pd.DataFrame, now: pd.Timestamp,
                      exc: BaseException) -> RedisOnlineResponse:
        joined = historical_features(store, rows.assign(event_timestamp=now), list(plan.refs),
                                     full_feature_names=plan.full_feature_names)
        values = {k: rows[k].copy() for k in plan.keys}
        status = {}
        for o in (o for sv in plan.views for o in sv.outputs):
            col = joined[o].astype(object)
            values[o] = col.where(col.notna(), None).to_numpy()
            status[o] = np.where(col.notna(), PRESENT, MISSING)
        return RedisOnlineResponse(pd.DataFrame(values, index=rows.index), pd.DataFrame(status, index=rows.index),
                                   fallback=True, reason=f"Redis unreachable: {exc}")
