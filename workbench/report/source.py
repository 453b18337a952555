"""What the report reads: the runs one ``workbench run`` recorded in the tracking store.

The series is a parent run of the ``benchmark-series`` experiment, tagged with its run-group id; each
notebook is a child run carrying ``results.json``, its figures and its wall time (see
:mod:`workbench.series`). Nothing here reads notebook folders.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from workbench.errors import ReportError, TrackingError
from workbench.tracking.experiments import SERIES
from workbench.tracking.query import get_run
from workbench.tracking.store import Store, with_retry

RUN_GROUP_TAG = "workbench.run_group"


@dataclass
class NotebookRun:
    """One executed notebook as the store holds it."""

    name: str
    run_id: str
    wall_s: float | None
    results: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes


@dataclass
class SeriesRun:
    """One ``workbench run``: its parent run's tags (the environment) and its notebooks in order."""

    run_id: str
    group: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    notebooks: list[NotebookRun]


def _series_experiment(c: Any, store: Store) -> str:
    exp = with_retry(c.get_experiment_by_name, SERIES)
    if exp is None:
        raise ReportError(f"no `workbench run` recorded in {store.uri} (no experiment {SERIES!r}); "
                          f"run `workbench run` first")
    return exp.experiment_id


def find_series(store: Store, run: str | None = None) -> str:
    """The parent run id of the series: ``run`` (a series run id, one of its notebooks' run ids, or a
    run-group id), else the latest series that finished or is still running."""
    c = store.client()
    exp = _series_experiment(c, store)
    if run is None:
        # RUNNING too: notebook 09 reports on the series it is part of (a dead series is ended as KILLED)
        found = with_retry(c.search_runs, [exp], "attributes.status != 'FAILED' and attributes.status != 'KILLED'",
                           max_results=50, order_by=["attributes.start_time DESC"])
        parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags and RUN_GROUP_TAG in r.data.tags]
        if not parents:
            raise ReportError(f"no finished `workbench run` in {store.uri}; run `workbench run` first")
        return parents[0].info.run_id
    by_group = with_retry(c.search_runs, [exp], f"tags.`{RUN_GROUP_TAG}` = '{run}'", max_results=1000)
    parents = [r for r in by_group if "mlflow.parentRunId" not in r.data.tags]
    if parents:
        return parents[0].info.run_id
    try:
        found = get_run(c, run)
    except TrackingError:
        raise ReportError(f"--run {run}: no series run, notebook run or run group with that id in {store.uri}; "
                          f"`workbench runs --experiment {SERIES}` lists them") from None
    if found.info.experiment_id != exp:
        raise ReportError(f"--run {run}: run {run} is not a `workbench run` (experiment {SERIES!r}); "
                          f"`workbench runs --experiment {SERIES}` lists them")
    return found.data.tags.get("mlflow.parentRunId", run)


def _artifacts(run: Any, store: Store, tmp: Path) -> Path:
    """The run's artifact folder: read in place for a local store, else downloaded into ``tmp``."""
    import mlflow

    uri = run.info.artifact_uri
    if uri.startswith("file://"):
        return Path(url2pathname(urlparse(uri).path))
    return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp / run.info.run_id),
                                                    tracking_uri=store.uri))


def load_series(store: Store, run: str | None = None) -> SeriesRun:
    """The series run and every notebook's results and figures, read back from ``store``."""
    c = store.client()
    parent = get_run(c, find_series(store, run))
    exp = parent.info.experiment_id
    children = with_retry(c.search_runs, [exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                          max_results=1000, order_by=["attributes.start_time ASC"])
    notebooks = []
    with tempfile.TemporaryDirectory() as tmp:
        for child in children:
            local = _artifacts(child, store, Path(tmp))
            results_file = local / "results.json"
            results = json.loads(results_file.read_text()) if results_file.is_file() else {}
            figures = {p.name: p.read_bytes() for p in sorted(local.glob("*.png"))}
            notebooks.append(NotebookRun(child.info.run_name, child.info.run_id,
                                         child.data.metrics.get("wall_time_s"), results, figures))
    if not notebooks:
        raise ReportError(f"series run {parent.info.run_id} in {store.uri} holds no notebook runs: it failed "
                          f"before its first notebook finished")
    return SeriesRun(parent.info.run_id, parent.data.tags.get(RUN_GROUP_TAG, ""), parent.info.status,
                     parent.info.start_time, parent.info.end_time, dict(parent.data.params),
                     dict(parent.data.metrics), dict(parent.data.tags), sorted(notebooks, key=lambda n: n.name))
