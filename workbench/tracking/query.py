"""Querying runs: a DataFrame of runs, the best run under constraints, runs side by side.

Constraints are evaluated in pandas on ``mlflow.search_runs``' frame, so a parameter (stored as text by
MLflow) compares numerically like a metric: ``"recall>=0.95 and params.k=10"``.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Sequence

import pandas as pd

from workbench.errors import TrackingError
from workbench.tracking.record import key_name
from workbench.tracking.store import Store, client, with_retry

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, "=": operator.eq,
        ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.:@/-]*)\s*(>=|<=|==|!=|=|>|<)\s*(.+?)\s*$")


def runs_frame(store: Store, experiment: str | None = None, max_results: int = 10_000,
               include_parents: bool = True) -> pd.DataFrame:
    """Runs of ``experiment`` (all experiments if None) in ``store``, newest first.

    Columns follow ``mlflow.search_runs``: ``run_id``, ``experiment_id``, ``status``, ``start_time``,
    ``end_time``, ``artifact_uri``, ``metrics.*``, ``params.*``, ``tags.*``; plus ``experiment`` and
    ``run_name``. An unknown experiment raises :class:`TrackingError` naming the known ones.
    """
    import mlflow

    c = client(store.uri)
    experiments = with_retry(c.search_experiments)
    names = {e.experiment_id: e.name for e in experiments}
    if experiment is None:
        ids = list(names)
    else:
        ids = [i for i, n in names.items() if n == experiment]
        if not ids:
            raise TrackingError(f"no experiment {experiment!r} in {store.uri}; known: {sorted(names.values())}")
    if not ids:
        return pd.DataFrame(columns=["run_id", "experiment", "run_name", "status"])
    mlflow.set_tracking_uri(store.uri)  # search_runs reads mlflow's global URI: set it to this store
    df = with_retry(mlflow.search_runs, experiment_ids=ids, max_results=max_results,
                    order_by=["attributes.start_time DESC"], output_format="pandas")
    if df.empty:
        return pd.DataFrame(columns=["run_id", "experiment", "run_name", "status"])
    df.insert(1, "experiment", df["experiment_id"].map(names))
    df.insert(2, "run_name", df.get("tags.mlflow.runName"))
    if not include_parents and "tags.mlflow.parentRunId" in df:
        parents = set(df["tags.mlflow.parentRunId"].dropna())
        df = df[~df["run_id"].isin(parents)]
    return df.reset_index(drop=True)


def parse_where(where: str | None) -> list[tuple[str, str, str]]:
    """``"recall>=0.95 and qps>100"`` -> ``[("recall", ">=", "0.95"), ("qps", ">", "100")]``."""
    if not where or not where.strip():
        return []
    conditions = []
    for part in re.split(r"\s+and\s+|\s*,\s*|\s*&&?\s*", where.strip(), flags=re.I):
        match = _CONDITION.match(part)
        if not match:
            raise TrackingError(f"cannot parse condition {part!r} in --where {where!r}; expected NAME OP VALUE "
                                f"with OP one of >=, <=, >, <, =, != (e.g. recall>=0.95)")
        conditions.append((match[1], match[2], match[3].strip("'\"")))
    return conditions


def resolve_column(df: pd.DataFrame, name: str) -> str:
    """A column of ``df`` for a user-given name: as is, else ``metrics.NAME``, ``params.NAME``, ``tags.NAME``."""
    logged = key_name(name) if "." not in name else name  # ndcg@10 is logged as ndcg_at_10
    for candidate in (name, f"metrics.{logged}", f"params.{logged}", f"tags.{name}"):
        if candidate in df.columns:
            return candidate
    metrics = sorted(c[len("metrics."):] for c in df.columns if c.startswith("metrics."))
    raise TrackingError(f"no metric, param or tag {name!r} in these runs; metrics are {metrics}")


def filter_runs(df: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """Rows of ``df`` that meet every condition of ``where`` (numeric compare when the value is a number)."""
    mask = pd.Series(True, index=df.index)
    for name, op, raw in parse_where(where):
        column = df[resolve_column(df, name)]
        value: Any = raw
        try:
            value = float(raw)
            column = pd.to_numeric(column, errors="coerce")
        except ValueError:
            column = column.astype("string")
        mask &= _OPS[op](column, value).fillna(False).astype(bool)
    return df[mask]


def best_run(store: Store, experiment: str, metric: str, where: str | None = None, mode: str = "max",
             df: pd.DataFrame | None = None) -> pd.Series:
    """The run of ``experiment`` with the highest (``mode="max"``) or lowest ``metric`` among runs meeting
    ``where`` (among ``df``'s rows when given, else the store's); e.g.
    ``best_run(store, "index-benchmarks", "qps", "recall>=0.95")``.

    Raises :class:`TrackingError` if no run qualifies, naming how many runs had the metric and the constraint.
    """
    if mode not in ("max", "min"):
        raise TrackingError(f"mode must be 'max' or 'min', got {mode!r}")
    runs = runs_frame(store, experiment) if df is None else df
    column = resolve_column(runs, metric)
    scored = runs[pd.to_numeric(runs[column], errors="coerce").notna()]
    candidates = filter_runs(scored, where)
    if candidates.empty:
        raise TrackingError(f"no run of experiment {experiment!r} meets {where!r}: {len(scored)} of {len(runs)} "
                            f"runs have {metric!r}, none of them qualify")
    values = pd.to_numeric(candidates[column])
    return candidates.loc[values.idxmax() if mode == "max" else values.idxmin()]


def compare_runs(store: Store, run_ids: Sequence[str], df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs side by side: one column per run (named by run name and id prefix), one row per param and
    metric any of them has, with ``differs`` marking rows whose values are not all equal."""
    if df is None:
        c = client(store.uri)
        rows = []
        for run_id in run_ids:
            run = get_run(c, run_id)
            row = {"run_id": run.info.run_id, "run_name": run.info.run_name}
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
        df = pd.DataFrame(rows)
    else:
        df = df[df["run_id"].isin(run_ids)]
    keys = sorted(c for c in df.columns if c.startswith(("params.", "metrics.")) and df[c].notna().any())
    table = df.set_index("run_id").loc[list(run_ids), keys].T
    table.columns = [f"{df.set_index('run_id').at[r, 'run_name']} ({r[:8]})" for r in run_ids]
    table["differs"] = table.astype("string").nunique(axis=1, dropna=False) > 1
    return table


def get_run(c: Any, run_id: str) -> Any:
    """``client.get_run`` with an error that names the run id and the store."""
    from mlflow.exceptions import MlflowException

    try:
        return with_retry(c.get_run, run_id)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            raise TrackingError(f"no run {run_id!r} in {c.tracking_uri}") from None
        raise
