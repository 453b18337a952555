"""Where measured points go besides the Parquet file: the tracking layer, or a list in tests.

A sink has two methods: ``sweep(name, params, dataset)``, a context manager around a whole sweep (the
parent run), and ``point(row)`` for each measured point (a child run).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from typing import Any, Iterator, Protocol

EXPERIMENT = "index-benchmarks"
PARAM_COLUMNS = ("index", "family", "library", "build_params", "query_params", "k", "threads", "batch_threads",
                 "dataset", "metric", "n_base", "n_queries", "dim")


class ResultsSink(Protocol):
    def sweep(self, name: str, params: dict[str, Any], dataset: dict[str, str]) -> contextlib.AbstractContextManager: ...

    def point(self, row: dict[str, Any]) -> None: ...


class CollectingSink:
    """Keeps sweeps and points in lists (tests, notebooks)."""

    def __init__(self) -> None:
        self.sweeps: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def sweep(self, name: str, params: dict[str, Any], dataset: dict[str, str]) -> Iterator[None]:
        self.sweeps.append({"name": name, "params": params, "dataset": dataset})
        yield

    def point(self, row: dict[str, Any]) -> None:
        self.points.append(dict(row))


class TrackingSink:
    """Logs a sweep as a parent run and each point as a child run through ``workbench.tracking``.

    If the tracking package cannot be imported, it warns once and logs nothing: measuring goes on.
    """

    def __init__(self, experiment: str = EXPERIMENT, command: str = "workbench ann") -> None:
        self.experiment, self.command = experiment, command
        self._tracking: Any = None
        self._dataset: dict[str, str] | None = None
        self.parent_run_id: str | None = None

    @contextlib.contextmanager
    def sweep(self, name: str, params: dict[str, Any], dataset: dict[str, str]) -> Iterator[None]:
        try:
            import workbench.tracking as tracking
        except ImportError as exc:
            warnings.warn(f"workbench.tracking is unavailable ({exc}); results are only written to Parquet",
                          RuntimeWarning, stacklevel=3)
            yield
            return
        self._tracking, self._dataset = tracking, dataset
        try:
            with tracking.parent_run(experiment=self.experiment, run_name=name, params=params,
                                     command=self.command, dataset=dataset) as parent_id:
                self.parent_run_id = parent_id
                yield
        finally:
            self._tracking = None

    def attach(self, name: str, artifacts: list, metrics: dict[str, Any] | None = None) -> None:
        """Log the sweep's outputs (results Parquet, summary, plots) as one more child of its parent run."""
        if self._dataset is None:
            return
        import workbench.tracking as tracking

        tracking.log_run(experiment=self.experiment, run_name=name, metrics=metrics or {},
                         artifacts=[a for a in artifacts if a.exists()], dataset=self._dataset,
                         parent_run_id=self.parent_run_id, command=self.command, tags={"kind": "report"})

    def point(self, row: dict[str, Any]) -> None:
        if self._tracking is None:
            return
        from workbench.index.metrics import METRICS

        params = {c: row[c] for c in PARAM_COLUMNS}
        params.update({f"q.{k}": v for k, v in json.loads(row["query_params"]).items()})
        metrics = {m: row[m] for m in METRICS}
        self._tracking.log_run(experiment=self.experiment, run_name=row["point"], params=params, metrics=metrics,
                               tags={"family": row["family"]}, dataset=self._dataset, command=self.command)
