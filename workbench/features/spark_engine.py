"""The offline engine on Spark: ``pit``'s point-in-time join and ``windows``' lookback aggregates, the same
answers, as a Spark plan that scales out with the executors.

The feature tables stay in DuckDB. A view version is exported once (per ingested row count) to a Parquet file
in the store's Spark folder, which every executor must be able to read (a shared folder on a cluster): keys
as ``_wb_k<i>``, features as ``_wb_f<i>``, event and created times as epoch microseconds (no time zone on the
way), the ingestion number. A call's entity rows go the same way: keys cast by DuckDB (so a key of another
numeric type compares as DuckDB compares it), the entity time in microseconds, the row's position.

The point-in-time join of one view is a union and one window function -- O(n log n), no range join::

    features (key, at = event time, kind 0, best = struct(event, coalesce(created, min), ingestion, f...))
      [filter_by_created_timestamp: created NOT NULL, at = greatest(event, created)]
    UNION ALL entities (key, at = entity time, kind 1, erow, best NULL)
    best = max(best) OVER (PARTITION BY key ORDER BY at, kind ROWS UNBOUNDED PRECEDING TO CURRENT ROW)
    keep kind 1; a feature is NULL when at - best.event > ttl

Spark orders structs field by field, so ``max`` picks by the rule's order (latest event, latest created with a
missing created time oldest, last ingested); rows at the entity time sort before it (kind 0 < 1), so equality
counts. The chosen row has the latest event time of all candidates, so its age decides the ttl for all of
them. The plan is Exchange hashpartitioning(key) -> Sort -> Window -> Filter: it spreads over executors as
long as no single key dominates (a hot key is one task). Spark's own as-of join (``pyspark.pandas.merge_asof``)
is rewritten to a range join plus an aggregate, whose cost grows with updates per key, so it is not used.

Window features: one row per (key, event time) by ``row_number`` when the view has ties, the entity rows
unioned in, then ``count/sum/avg/min/max OVER (PARTITION BY key ORDER BY t RANGE BETWEEN w PRECEDING AND
CURRENT ROW)``, as in ``windows``.

Spark's result (entity position, values) is collected as Arrow and joined back to the entity rows in DuckDB
with the view's column types, so the frame has the DuckDB engine's columns, dtypes, index and row order.

One SparkSession per process (:func:`session`), created on first use: master from the argument, else
``WORKBENCH_SPARK_MASTER``, else ``local[2]``; no UI, driver on loopback for local masters, UTC session time
zone, 4 shuffle partitions locally, log level WARN (Hadoop's native-library and host notices at ERROR). It is
stopped at interpreter exit or by :func:`stop_session`, not by closing a store: starting it costs seconds and
the stores of a process share it. The JVM exits with the Python process (pyspark's stdin pipe). ``SMALL_DATA``
are settings for many tiny joins (the tests): about a second each instead of several under load.
The plan uses Spark SQL functions only (no Python UDF), so a cluster's executors need no Python packages.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
import warnings
import weakref
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from workbench.errors import FeatureStoreError
from workbench.features.offline import ROW, OfflineStore, _family
from workbench.features.pit import ENTITY_ROW, ENTITY_TS, Request, check_key_types, entity_frame, plan
from workbench.features.view import quote
from workbench.features.windows import AGGREGATES, WindowRequest, window_request

MASTER_ENV = "WORKBENCH_SPARK_MASTER"
DIR_ENV = "WORKBENCH_SPARK_DIR"
DEFAULT_MASTER = "local[2]"
MIN_LONG = -(2**63)
_SPARK_AGG = {"count": F.count, "sum": F.sum, "mean": F.avg, "min": F.min, "max": F.max}
_LOG4J = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
"""

# Settings for many tiny joins (tests): a JIT that compiles quickly, no generated code to compile per plan,
# one shuffle partition. Spark's per-query overhead is compilation and task start-up, not data.
SMALL_DATA = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
              "spark.sql.codegen.wholeStage": "false", "spark.sql.shuffle.partitions": "1"}

_lock = threading.Lock()
_state: dict[str, Any] = {}


def resolve_master(master: str | None = None) -> str:
    """The master URL: the argument, else ``$WORKBENCH_SPARK_MASTER``, else ``local[2]``."""
    return master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def session(master: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The process's SparkSession on ``master``, started on first use (see the module docstring)."""
    master = resolve_master(master)
    with _lock:
        running = _state.get("session")
        if running is not None:
            if _state["master"] != master:
                raise FeatureStoreError(f"a SparkSession on {_state['master']} already runs in this process; "
                                        f"asked for {master} (one master per process; stop_session() first)")
            return running
        logdir = Path(tempfile.mkdtemp(prefix="wb-spark-log-"))
        (logdir / "log4j2.properties").write_text(_LOG4J)
        settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                    "spark.sql.session.timeZone": "UTC"}
        if is_local(master):
            settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                             "spark.sql.shuffle.partitions": "4"})
        settings.update(conf or {})
        java = f"-Dlog4j2.configurationFile=file:{logdir / 'log4j2.properties'}"
        opts = settings.get("spark.driver.extraJavaOptions", "")
        settings["spark.driver.extraJavaOptions"] = f"{opts} {java}".strip()
        builder = SparkSession.builder.master(master).appName("workbench-features")
        for k, v in settings.items():
            builder = builder.config(k, v)
        try:
            with _quiet():
                spark = builder.getOrCreate()
        except Exception as exc:  # pyspark raises several kinds (no Java, a master it cannot reach): one line
            shutil.rmtree(logdir, ignore_errors=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FeatureStoreError(f"cannot start Spark on {master}: {first} (Spark needs Java 17+ on PATH or "
                                    "JAVA_HOME)") from exc
        spark.sparkContext.setLogLevel("WARN")
        _state.update(session=spark, master=master, logdir=logdir)
        if not _state.get("atexit"):
            atexit.register(stop_session)
            _state["atexit"] = True
        return spark


def stop_session() -> None:
    """Stop the process's SparkSession, if one runs (the next :func:`session` starts a new one)."""
    with _lock:
        spark = _state.pop("session", None)
        if spark is not None:
            spark.stop()
            shutil.rmtree(_state.pop("logdir"), ignore_errors=True)


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@contextmanager
def _quiet() -> Iterator[None]:
    """pyspark warns about pandas 3 when it loads its Arrow helpers; no pandas conversion of Spark's is used."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        yield


class SparkEngine:
    """Runs the offline joins of ``offline`` (a DuckDB ``OfflineStore``) on Spark; see the module docstring.

    ``spark_dir`` (or ``$WORKBENCH_SPARK_DIR``) holds the exported Parquet files in a folder of this engine's
    own, removed by :meth:`close`; a master other than ``local`` needs it on storage every executor reads.
    ``conf``: extra Spark settings (``spark.executor.memory``, ...), applied when this engine starts the
    process's session.
    """

    def __init__(self, offline: OfflineStore, master: str | None = None, spark_dir: str | os.PathLike | None = None,
                 conf: Mapping[str, str] | None = None):
        self.offline, self.master, self.conf = offline, resolve_master(master), dict(conf or {})
        root = spark_dir or os.environ.get(DIR_ENV)
        if root is None and not is_local(self.master):
            raise FeatureStoreError(f"Spark master {self.master} needs spark_dir (or {DIR_ENV}): a folder every "
                                    "executor can read, for the exported feature tables")
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="wb-spark-", dir=root))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)  # also for a store never closed
        self._exports: dict[tuple[str, int], Path] = {}

    @property
    def spark(self) -> SparkSession:
        return session(self.master, self.conf)

    # ---- inputs as Parquet -------------------------------------------------------------------------------
    def table(self, req: Request) -> str:
        """The view version's Parquet file, written when the version or its row count changed."""
        v = req.view
        version, rows = self.offline.version(v.name), self.offline.state(v.name)["next_row"]
        path = self.dir / f"fv_{v.name}_v{version}_r{rows}.parquet"
        if not path.exists():
            cols = [f"{quote(k)} AS _wb_k{i}" for i, k in enumerate(v.entities)]
            cols += [f"{quote(f)} AS _wb_f{i}" for i, f in enumerate(v.features)]
            created = f"epoch_us({quote(v.created_timestamp_column)})" if v.created_timestamp_column else "NULL::BIGINT"
            cols += [f"epoch_us({quote(v.timestamp_field)}) AS _wb_t", f"{created} AS _wb_c", ROW]
            not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in v.entities)
            tmp = path.with_suffix(".tmp")
            self.offline.con.execute(f"COPY (SELECT {', '.join(cols)} FROM {req.table} WHERE {not_null}) "
                                     f"TO {_lit(tmp)} (FORMAT parquet)")
            os.replace(tmp, path)
            old = self._exports.get((v.name, version))
            if old is not None:
                old.unlink(missing_ok=True)
            self._exports[(v.name, version)] = path
        return str(path)

    def _entities(self, entity: str, req: Request, cast_to_view: bool) -> tuple[Path, list[bool]]:
        """The entity rows with keys and a time as Parquet; per key, whether the feature side compares as DOUBLE.

        DuckDB's ASOF path compares keys as they are (an INTEGER with a DOUBLE as DOUBLE); its created-filter and
        window paths cast the entity key to the view's type. Both are reproduced here, the casts done by DuckDB."""
        con, v = self.offline.con, req.view
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {entity}").fetchall()}
        sel, double = [], []
        for i, k in enumerate(v.entities):
            same = _family(types[k]) == _family(v.dtypes[k]) or types[k] == '"NULL"'
            double.append(not (cast_to_view or same))
            sel.append(f"CAST({quote(k)} AS {'DOUBLE' if double[-1] else v.dtypes[k]}) AS _wb_k{i}")
        not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in v.entities)
        path = self.dir / f"entities_{uuid.uuid4().hex}.parquet"
        con.execute(f"COPY (SELECT {', '.join(sel)}, epoch_us({ENTITY_TS}) AS _wb_at, {ENTITY_ROW} FROM {entity} "
                    f"WHERE {not_null} AND {ENTITY_TS} IS NOT NULL) TO {_lit(path)} (FORMAT parquet)")
        return path, double

    def _keys(self, req: Request, double: Sequence[bool] = ()) -> list:
        return [F.col(f"_wb_k{i}").cast("double").alias(f"_wb_k{i}") if i < len(double) and double[i]
                else F.col(f"_wb_k{i}") for i in range(len(req.view.entities))]

    # ---- the plans ---------------------------------------------------------------------------------------
    def pit_frame(self, req: Request, entities: Path, double: Sequence[bool], by_created: bool) -> DataFrame:
        """Spark's point-in-time join of one view: ``_wb_erow`` and ``_wb_o<n>`` per requested feature."""
        v, spark = req.view, self.spark
        f = spark.read.parquet(self.table(req))
        if by_created:
            f = f.where(F.col("_wb_c").isNotNull())
        idx = [v.features.index(x) for x in req.features]
        best = F.struct(F.col("_wb_t"), F.coalesce(F.col("_wb_c"), F.lit(MIN_LONG)).alias("_wb_c"), F.col(ROW),
                        *[F.col(f"_wb_f{j}") for j in idx])
        at = F.greatest("_wb_t", "_wb_c") if by_created else F.col("_wb_t")
        fu = f.select(*self._keys(req, double), at.alias("_wb_at"), F.lit(0).alias("_wb_kind"),
                      F.lit(None).cast("long").alias(ENTITY_ROW), best.alias("_wb_best"))
        eu = spark.read.parquet(str(entities)).select(
            *self._keys(req), "_wb_at", F.lit(1).alias("_wb_kind"), ENTITY_ROW,
            F.lit(None).cast(fu.schema["_wb_best"].dataType).alias("_wb_best"))
        keys = [f"_wb_k{i}" for i in range(len(v.entities))]
        w = Window.partitionBy(*keys).orderBy("_wb_at", "_wb_kind").rowsBetween(Window.unboundedPreceding,
                                                                                 Window.currentRow)
        r = fu.unionByName(eu).withColumn("_wb_best", F.max("_wb_best").over(w)).where(F.col("_wb_kind") == 1)
        ok = F.lit(True) if v.ttl is None else F.col("_wb_at") - F.col("_wb_best._wb_t") <= F.lit(v.ttl_us)
        return r.select(ENTITY_ROW, *[F.when(ok, F.col(f"_wb_best._wb_f{j}")).alias(f"_wb_o{n}")
                                      for n, j in enumerate(idx)])

    def window_frame(self, wr: WindowRequest, entities: Path) -> DataFrame:
        """Spark's lookback aggregates of one feature: ``_wb_erow`` and ``_wb_o<n>`` per output column."""
        req, spark = wr.req, self.spark
        v = req.view
        keys = [f"_wb_k{i}" for i in range(len(v.entities))]
        f = spark.read.parquet(self.table(req))
        if req.ties:  # a second row at the same key and time restates the first: keep the rule's choice
            latest = Window.partitionBy(*keys, "_wb_t").orderBy(F.col("_wb_c").desc_nulls_last(), F.col(ROW).desc())
            f = f.withColumn("_wb_rn", F.row_number().over(latest)).where(F.col("_wb_rn") == 1)
        value = F.col(f"_wb_f{v.features.index(wr.feature)}")
        fu = f.select(*keys, F.col("_wb_t").alias("_wb_at"), value.alias("_wb_v"),
                      F.lit(None).cast("long").alias(ENTITY_ROW))
        eu = spark.read.parquet(str(entities)).select(*keys, "_wb_at", F.lit(None).cast(fu.schema["_wb_v"].dataType)
                                                      .alias("_wb_v"), ENTITY_ROW)
        exact = _family(v.dtypes[wr.feature]) == "int"  # an integer sum as DuckDB's HUGEINT, not an overflowing long
        cols = []
        for w in wr.windows.values():
            frame = Window.partitionBy(*keys).orderBy("_wb_at").rangeBetween(-(w // timedelta(microseconds=1)), 0)
            for a in wr.aggregates:
                x = F.col("_wb_v").cast("decimal(38,0)") if a == "sum" and exact else F.col("_wb_v")
                cols.append(_SPARK_AGG[a](x).over(frame).alias(f"_wb_o{len(cols)}"))
        return fu.unionByName(eu).select(ENTITY_ROW, *cols).where(F.col(ENTITY_ROW).isNotNull())

    def _assemble(self, entity: str, df: DataFrame, exprs: list[str]) -> pd.DataFrame:
        """Spark's rows joined back to every entity row in DuckDB, cast to the DuckDB engine's types."""
        with _quiet():
            got = df.toArrow()
        name = f"_wb_spark_{id(got)}"
        con = self.offline.con
        con.register(name, got)
        try:
            return con.execute(f"SELECT {', '.join(exprs)} FROM {entity} e LEFT JOIN {name} g "
                               f"ON g.{ENTITY_ROW} = e.{ENTITY_ROW} ORDER BY e.{ENTITY_ROW}").df()
        finally:
            con.unregister(name)

    # ---- the API -----------------------------------------------------------------------------------------
    def historical_features(self, entity_df: pd.DataFrame, refs: Sequence[str], *, full_feature_names: bool = False,
                            filter_by_created_timestamp: bool = False,
                            explain: list[str] | None = None) -> pd.DataFrame:
        """As ``pit.historical_features``; ``explain``, when a list, receives each view's formatted physical plan."""
        reqs = plan(self.offline, entity_df, list(refs), full_feature_names)
        keys = list(dict.fromkeys(k for r in reqs for k in r.view.entities))
        frame = entity_frame(entity_df, keys)
        con = self.offline.con
        entity = f"_wb_entity_{id(frame)}"
        con.register(entity, frame)
        out = entity_df.copy()
        try:
            for req in reqs:
                check_key_types(con, entity, req)
                by_created = bool(filter_by_created_timestamp and req.view.created_timestamp_column)
                path, double = self._entities(entity, req, cast_to_view=by_created)
                try:
                    df = self.pit_frame(req, path, double, by_created)
                    if explain is not None:
                        explain.append(plan_text(df))
                    exprs = [f"CAST(g._wb_o{n} AS {req.view.dtypes[f]}) AS {quote(o)}"
                             for n, (f, o) in enumerate(zip(req.features, req.outputs))]
                    got = self._assemble(entity, df, exprs)
                finally:
                    path.unlink(missing_ok=True)
                for o in req.outputs:
                    out[o] = pd.Series(got[o].array, index=out.index)
        finally:
            con.unregister(entity)
        return out

    def window_features(self, entity_df: pd.DataFrame, ref: str,
                        windows: Sequence[timedelta] | Mapping[str, timedelta],
                        aggregates: Sequence[str] = ("count", "sum", "mean", "min", "max")) -> pd.DataFrame:
        """As ``windows.window_features``."""
        wr = window_request(self.offline, entity_df, ref, windows, aggregates)
        req, con = wr.req, self.offline.con
        frame = entity_frame(entity_df, list(req.view.entities))
        entity = f"_wb_win_{id(frame)}"
        con.register(entity, frame)
        try:
            check_key_types(con, entity, req)
            val = quote(wr.feature)
            # the DuckDB engine's output types: those of its aggregates over the stored column
            types = dict(zip(wr.aggregates, map(str, con.sql(
                "SELECT " + ", ".join(f"{AGGREGATES[a]}({val})" for a in wr.aggregates)
                + f" FROM {req.table}").types)))
            exprs = [f"coalesce(CAST(g._wb_o{n} AS BIGINT), 0) AS {quote(o)}" if a == "count"
                     else f"CAST(g._wb_o{n} AS {types[a]}) AS {quote(o)}"
                     for n, (o, a) in enumerate(zip(wr.outputs, wr.output_aggregates))]
            path, _ = self._entities(entity, req, cast_to_view=True)
            try:
                got = self._assemble(entity, self.window_frame(wr, path), exprs)
            finally:
                path.unlink(missing_ok=True)
        finally:
            con.unregister(entity)
        out = entity_df.copy()
        for o in wr.outputs:
            out[o] = pd.Series(got[o].array, index=out.index)
        return out

    def close(self) -> None:
        """Remove this engine's exported files (the shared session keeps running; see :func:`stop_session`)."""
        self._cleanup()
        self._exports.clear()


def plan_text(df: DataFrame, mode: str = "formatted") -> str:
    """Spark's physical plan of ``df`` as text (what ``df.explain(mode)`` prints)."""
    return df.sparkSession._jvm.PythonSQLUtils.explainString(df._jdf.queryExecution(), mode)
