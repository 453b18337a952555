"""Querying runs: a DataFrame of runs, the best run under constraints, runs side by side.

Constraints are evaluated in pandas on ``mlflow.search_runs``' frame, so a parameter (stored as text by
MLflow) compares numerically like a metric: ``"recall>=0.95 and params.k=10"``.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Sequence

import pandas as pd

from workbench.errors import TrackingError
from workbench.tracking.record import key_name
from workbench.tracking.store import Store, with_retry

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, "=": operator.eq,
        ">": operator.gt, "<": operator.lt}
_NAME = re.compile(r"[A-Za-z_][\w.:@/-]*")
_OP = re.compile(r">=|<=|==|!=|=|>|<")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_AND = re.compile(r"\s+and\s+", re.I)


def runs_frame(store: Store, experiment: str | None = None, max_results: int = 10_000,
               include_parents: bool = True) -> pd.DataFrame:
    """Runs of ``experiment`` (all experiments if None) in ``store``, newest first.

    Columns follow ``mlflow.search_runs``: ``run_id``, ``experiment_id``, ``status``, ``start_time``,
    ``end_time``, ``artifact_uri``, ``metrics.*``, ``params.*``, ``tags.*``; plus ``experiment`` and
    ``run_name``. An unknown experiment raises :class:`TrackingError` naming the known ones.
    """
    import mlflow

    c = store.client()
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


def parse_where(where: str | None) -> list[tuple[str, str, float]]:
    """``"recall>=0.95 and qps>100"`` -> ``[("recall", ">=", 0.95), ("qps", ">", 100.0)]``.

    The grammar is strict: ``NAME OP NUMBER`` conditions joined by ``and``, OP one of ``>= <= > < = == !=``,
    NUMBER a finite decimal. Anything else (``recall<<0.5``, ``or``, a text value) is refused with the
    position, never compared as text or silently re-read.
    """
    if not where or not where.strip():
        return []
    conditions, pos = [], 0

    def fail(at: int, expected: str) -> TrackingError:
        found = where[at:at + 12] or "the end"
        return TrackingError(f"--where {where!r}: at position {at + 1} expected {expected}, found {found!r} "
                             f"(the form is NAME OP NUMBER [and NAME OP NUMBER ...], e.g. recall>=0.95 and k=10)")

    while True:
        pos = _skip_space(where, pos)
        name = _NAME.match(where, pos)
        if not name:
            raise fail(pos, "a metric or param name")
        pos = _skip_space(where, name.end())
        op = _OP.match(where, pos)
        if not op:
            raise fail(pos, "an operator (>=, <=, >, <, =, ==, !=)")
        pos = _skip_space(where, op.end())
        number = _NUMBER.match(where, pos)
        if not number or not math.isfinite(float(number[0])):
            raise fail(pos, "a number")
        conditions.append((name[0], op[0], float(number[0])))
        pos = number.end()
        if _skip_space(where, pos) == len(where):
            return conditions
        joiner = _AND.match(where, pos)
        if not joiner:
            raise fail(_skip_space(where, pos), "'and' or the end")
        pos = joiner.end()


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


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
    for name, op, value in parse_where(where):
        column = pd.to_numeric(df[resolve_column(df, name)], errors="coerce")  # params are stored as text
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
        c = store.client()
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
