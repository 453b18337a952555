"""``FeatureStore``: the Feast-shaped front door over the offline store, the joins and the online store."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features import online as _online
from workbench.features.offline import OfflineStore
from workbench.features.pit import historical_features
from workbench.features.view import FeatureView
from workbench.features.windows import window_features

ENGINES = ("duckdb", "spark")


class FeatureStore:
    """Feature views in DuckDB (a file, or memory when ``path`` is None), joined point-in-time, served online.

    ``engine`` runs the offline joins (``get_historical_features``, ``get_window_features``): ``"duckdb"`` in
    process, or ``"spark"`` (``spark_engine``: the same answers from a Spark plan; ``spark_master`` a master
    URL, default ``$WORKBENCH_SPARK_MASTER`` or ``local[2]``; ``spark_dir`` a folder every executor reads,
    default ``$WORKBENCH_SPARK_DIR`` or a temporary one; ``spark_conf`` extra Spark settings). The tables,
    ingestion and the online store stay in DuckDB either way.

    >>> fs = FeatureStore()
    >>> fs.apply(FeatureView("driver_stats", ["driver_id"], ["conv_rate"], ttl=timedelta(days=1)), df)
    >>> train = fs.get_historical_features(entity_df, ["driver_stats:conv_rate"])
    """

    def __init__(self, path: str | os.PathLike | None = None, *, memory_limit: str | None = None,
                 temp_directory: str | os.PathLike | None = None, threads: int | None = None,
                 online: Any = None, engine: str = "duckdb", spark_master: str | None = None,
                 spark_dir: str | os.PathLike | None = None, spark_conf: Mapping[str, str] | None = None):
        """``online``: a separate online store such as ``online_redis.RedisOnlineStore(client)``; None keeps
        the online tables in DuckDB beside the offline ones."""
        if engine not in ENGINES:
            raise FeatureStoreError(f"unknown offline engine {engine!r} (known: {', '.join(ENGINES)})")
        if engine != "spark" and (spark_master or spark_dir or spark_conf):
            raise FeatureStoreError(f"spark_master, spark_dir and spark_conf need engine='spark' (got {engine!r})")
        self.offline = OfflineStore(path, memory_limit=memory_limit, temp_directory=temp_directory, threads=threads)
        self.online = online
        self.engine = engine
        self.spark = None
        if engine == "spark":
            # imported here so that pyspark (and a JVM) is loaded only by the stores that use it
            from workbench.features.spark_engine import SparkEngine

            try:
                self.spark = SparkEngine(self.offline, spark_master, spark_dir, spark_conf)
            except BaseException:
                self.offline.close()
                raise
        # Serving plans per (feature list, full_feature_names): a request then runs no registry query.
        # Cleared by apply (a new version or ttl); a view changed by another process on the same file is
        # seen by a new FeatureStore.
        self._plans: dict[tuple[tuple[str, ...], bool], _online.ServingPlan] = {}

    @property
    def con(self):
        """The DuckDB connection (for inspection and benchmarks)."""
        return self.offline.con

    def apply(self, view: FeatureView, source: pd.DataFrame | str | os.PathLike | None = None) -> int:
        """Register ``view`` (a schema change makes a new version) and ingest ``source``; returns the version."""
        try:
            return self.offline.apply(view, source)
        finally:
            self._plans.clear()   # also after a failure: it may have registered a version

    def ingest(self, name: str, source: pd.DataFrame | str | os.PathLike) -> int:
        """Append rows to view ``name`` atomically, schema-checked; returns the number of rows."""
        return self.offline.ingest(name, source)

    def get_feature_view(self, name: str) -> FeatureView:
        return self.offline.view(name)

    def get_historical_features(self, entity_df: pd.DataFrame, features: Sequence[str], *,
                                full_feature_names: bool = False,
                                filter_by_created_timestamp: bool = False) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` with the requested ``view:feature`` columns (see ``pit``)."""
        if self.spark is not None:
            return self.spark.historical_features(entity_df, list(features), full_feature_names=full_feature_names,
                                                  filter_by_created_timestamp=filter_by_created_timestamp)
        return historical_features(self.offline, entity_df, list(features), full_feature_names=full_feature_names,
                                   filter_by_created_timestamp=filter_by_created_timestamp)

    def get_window_features(self, entity_df: pd.DataFrame, feature: str,
                            windows: Sequence[timedelta] | Mapping[str, timedelta],
                            aggregates: Sequence[str] = ("count", "sum", "mean", "min", "max")) -> pd.DataFrame:
        """Lookback aggregates of one ``view:feature`` ending at each entity time (see ``windows``)."""
        if self.spark is not None:
            return self.spark.window_features(entity_df, feature, windows, aggregates)
        return window_features(self.offline, entity_df, feature, windows, aggregates)

    def materialize(self, start: datetime, end: datetime, views: Iterable[str] | None = None) -> dict[str, int]:
        if self.online is not None:
            return self.online.materialize(self.offline, start, end, views)
        return _online.materialize(self.offline, start, end, views)

    def materialize_incremental(self, end: datetime, views: Iterable[str] | None = None) -> dict[str, int]:
        if self.online is not None:
            return self.online.materialize_incremental(self.offline, end, views)
        return _online.materialize_incremental(self.offline, end, views)

    def get_online_features(self, features: Sequence[str],
                            entity_rows: pd.DataFrame | Sequence[Mapping[str, Any]],
                            at: datetime | None = None, full_feature_names: bool = False,
                            fallback: str | None = None) -> _online.OnlineResponse:
        """Latest materialised values with a status each (present, missing, expired) at request time ``at``;
        ``fallback="offline"`` lets a separate online store that cannot be reached answer from the offline join
        (flagged in the response)."""
        rows = _online.request_rows(entity_rows)
        plan = self._plan(features, rows, full_feature_names)
        if self.online is not None:
            return self.online.online_features(self.offline, plan, rows, at, fallback=fallback)
        return _online.online_features(self.offline, plan, rows, at)

    def _plan(self, features: Sequence[str], rows: pd.DataFrame, full_feature_names: bool) -> _online.ServingPlan:
        key = (tuple(features), bool(full_feature_names))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _online.serving_plan(self.offline, features, rows, full_feature_names)
        return plan

    def close(self) -> None:
        if self.spark is not None:
            self.spark.close()
        self.offline.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
