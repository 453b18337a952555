"""The one tracking seam: where a runner's measurements go besides its own files.

A :class:`Sink` has three methods, called in this order by every runner:

* ``sweep(name, params, dataset)``: a context manager around the whole experiment (the parent run);
* ``point(row)``: one measured row (a child run of the sweep);
* ``attach(name, artifacts, metrics)``: the sweep's outputs (files, headline figures) on the parent run.

:class:`TrackingSink` logs to MLflow through :mod:`workbench.tracking.runs` (a store named explicitly;
rows become runs through the runner's ``to_run``), :class:`CollectingSink` keeps everything in lists
(tests, notebooks that do not track), :class:`NullSink` drops everything.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Protocol, Sequence

from workbench.errors import TrackingError
from workbench.tracking.runs import attach_outputs, log_run, parent_run
from workbench.tracking.store import Store

Dataset = Mapping[str, str]  # name, digest, source (see runs.log_run)


class Sink(Protocol):
    """What a runner reports to (see the module docstring)."""

    def sweep(self, name: str, params: Mapping[str, Any], dataset: Dataset | None) -> ContextManager[None]: ...

    def point(self, row: Mapping[str, Any]) -> None: ...

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class ChildRun:
    """What one row becomes in the store: a run name, its params, metrics, tags and artifacts."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Sequence[str | Path] = ()


class TrackingSink:
    """A sweep as a parent run of ``experiment`` in ``store``, each point a child run (``to_run(row)``
    says which of the row's fields are params and which metrics), outputs on the parent.

    Store failures never stop the measurement: runs then wait in the store's outbox (see ``runs``).
    """

    def __init__(self, store: Store, experiment: str, command: str,
                 to_run: Callable[[Mapping[str, Any]], ChildRun]) -> None:
        self.store, self.experiment, self.command, self.to_run = store, experiment, command, to_run
        self.parent_run_id: str | None = None
        self._dataset: Dataset | None = None
        self._open = False

    @contextlib.contextmanager
    def sweep(self, name: str, params: Mapping[str, Any], dataset: Dataset | None) -> Iterator[None]:
        with parent_run(self.store, self.experiment, name, params, command=self.command,
                        dataset=dataset) as run_id:
            self.parent_run_id, self._dataset, self._open = run_id, dataset, True
            try:
                yield
            finally:
                self._open = False

    def point(self, row: Mapping[str, Any]) -> None:
        self._check_open("a point")
        run = self.to_run(row)
        log_run(self.store, self.experiment, run.name, params=run.params, metrics=run.metrics, tags=run.tags,
                artifacts=run.artifacts, dataset=self._dataset, command=self.command)

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None:
        self._check_open(f"outputs {name!r}")
        attach_outputs(name, artifacts, metrics)

    def _check_open(self, what: str) -> None:
        if not self._open:
            raise TrackingError(f"{what} reported outside a sweep of {self.experiment!r}: open sink.sweep() first")


class CollectingSink:
    """Keeps sweeps, points and attached outputs in lists (tests, notebooks that do not track)."""

    def __init__(self) -> None:
        self.sweeps: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []
        self.attached: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def sweep(self, name: str, params: Mapping[str, Any], dataset: Dataset | None) -> Iterator[None]:
        self.sweeps.append({"name": name, "params": dict(params), "dataset": dataset})
        yield

    def point(self, row: Mapping[str, Any]) -> None:
        self.points.append(dict(row))

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None:
        self.attached.append({"name": name, "artifacts": list(artifacts), "metrics": dict(metrics or {})})


class NullSink:
    """Reports nowhere (``--no-track``)."""

    @contextlib.contextmanager
    def sweep(self, name: str, params: Mapping[str, Any], dataset: Dataset | None) -> Iterator[None]:
        yield

    def point(self, row: Mapping[str, Any]) -> None:
        return None

    def attach(self, name: str, artifacts: Sequence[Path], metrics: Mapping[str, Any] | None = None) -> None:
        return None
