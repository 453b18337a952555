"""Logging runs: batched parameters and metrics, context tags, dataset inputs, artifacts, nested sweeps.

The ``MlflowClient`` API is used rather than mlflow's fluent active-run stack: a run is written in three
calls (create with all tags, one batch of params+metrics, terminate), which keeps logging fast on SQLite
(``workbench tracking-bench`` measures it), and no global active-run state leaks between sweeps. If the
store is unreachable or stays locked after retries, the run goes to the local outbox (``workbench runs
sync`` logs it later).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from workbench.errors import WorkbenchError
from workbench.tracking.context import run_tags
from workbench.tracking.outbox import RunRecord, write_entry
from workbench.tracking.store import client, ensure_experiment, tracking_uri, unreachable_reason, with_retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAMS_PER_BATCH = 100    # mlflow's limit for params (and tags) in one log_batch
MAX_METRICS_PER_BATCH = 900   # mlflow allows 1000 entities in one log_batch, 100 of them params
MAX_DIGEST_CHARS = 32         # mlflow stores dataset digests in a 36-character column
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")


class TrackingError(WorkbenchError, ValueError):
    """Bad input to the tracking API (a non-numeric metric, a missing artifact, an unknown run)."""


class TrackingUnavailableWarning(UserWarning):
    """The tracking store could not take a run; it waits in the local outbox."""


@dataclass
class _Parent:
    run_id: str | None              # set when the parent is in the store
    record: RunRecord | None = None  # set when the parent waits in the outbox
    queued_children: int = 0


_current_parent: ContextVar[_Parent | None] = ContextVar("workbench_tracking_parent", default=None)


def log_run(experiment: str, run_name: str, params: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
            artifacts: Sequence[str | Path] = (), dataset: Mapping[str, str] | None = None,
            parent_run_id: str | None = None, command: str | None = None) -> str | None:
    """Log one finished run; returns its run id, or None if it was queued in the outbox.

    ``params`` are stringified, ``metrics`` must be numbers (NaN allowed); ``None`` values are left out
    (not measured); names MLflow refuses are mapped (``ndcg@10`` -> ``ndcg_at_10``, see :func:`key_name`).
    ``tags`` add to the context tags (git commit and dirty flag, library versions, CPU, cores, threads,
    ``command``). ``artifacts`` are
    files or folders already written locally; a folder is logged under its own name. ``dataset``
    (``name``, ``digest``, ``source``, optional ``context``) becomes an ``mlflow.log_input``. The run is
    nested under ``parent_run_id``, else under the enclosing :func:`parent_run` of this thread.

    Never raises for an unreachable or locked store: it warns and keeps the run in the outbox.
    Raises :class:`TrackingError` for bad input (before touching the store).
    """
    record = _record(experiment, run_name, params, metrics, tags, artifacts, dataset, command)
    record.end_time = _now()
    if _link_parent(record, parent_run_id):
        return None
    return _store_or_queue(record)


def _link_parent(record: RunRecord, parent_run_id: str | None) -> bool:
    """Set the record's parent (explicit, else the enclosing sweep); True if it was queued with an outboxed
    parent (a child cannot enter the store before its parent, so it waits in the outbox too)."""
    enclosing = _current_parent.get()
    if parent_run_id is None and enclosing is not None:
        if enclosing.run_id is None:
            record.parent_local_id = enclosing.record.local_id  # type: ignore[union-attr]
            record.tracking_uri, record.error = tracking_uri(), "parent run is in the outbox"
            write_entry(record)
            enclosing.queued_children += 1
            return True
        parent_run_id = enclosing.run_id
    record.parent_run_id = parent_run_id
    return False


@contextlib.contextmanager
def parent_run(experiment: str, run_name: str, params: Mapping[str, Any] | None = None, *,
               tags: Mapping[str, Any] | None = None, command: str | None = None,
               dataset: Mapping[str, str] | None = None,
               parent_run_id: str | None = None) -> Iterator[str | None]:
    """A sweep: a parent run open for the block; :func:`log_run` calls inside it become its children.

    Sweeps nest like runs (under ``parent_run_id``, else the enclosing sweep).
    Yields the parent's run id, or None if the store is unavailable (parent and children then wait in the
    outbox together, and ``workbench runs sync`` restores the nesting). The parent ends FINISHED, or FAILED
    if the block raises.
    """
    record = _record(experiment, run_name, params, None, tags, (), dataset, command)
    record.is_parent, record.status = True, "RUNNING"
    run_id = None if _link_parent(record, parent_run_id) else _store_or_queue(record, terminate=False)
    state = _Parent(run_id=run_id, record=None if run_id else record)
    token = _current_parent.set(state)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        _current_parent.reset(token)
        end = _now()
        if run_id is not None:
            try:
                with_retry(client().set_terminated, run_id, status=status, end_time=end)
            except Exception as exc:
                warnings.warn(TrackingUnavailableWarning(
                    f"could not mark parent run {run_id} ({run_name}) {status}: {exc}"), stacklevel=3)
        else:
            record.status, record.end_time = status, end
            path = write_entry(record)
            warnings.warn(TrackingUnavailableWarning(
                f"tracking store {record.tracking_uri} unavailable ({record.error}); sweep '{run_name}' and "
                f"{state.queued_children} child runs kept in {path.parent}; log them later with "
                f"`workbench runs sync`"), stacklevel=3)


def store_record(record: RunRecord, mlflow_client: "MlflowClient | None" = None,
                 terminate: bool = True) -> str:
    """Write ``record`` to the store (retrying while SQLite is locked); returns the new run id.

    If a step after the run's creation fails, the half-written run is deleted before the error propagates,
    so a later sync does not leave a duplicate.
    """
    from mlflow.entities import Metric, Param

    c = mlflow_client or client()
    experiment_id = _experiment_id(c, record.experiment)
    tags = dict(record.tags)
    if record.parent_run_id:
        tags[PARENT_TAG] = record.parent_run_id
    run = with_retry(c.create_run, experiment_id, start_time=record.start_time, tags=tags,
                     run_name=record.run_name)
    run_id = run.info.run_id
    try:
        params = [Param(k, v) for k, v in record.params.items()]
        metrics = [Metric(k, v, record.end_time or record.start_time, 0) for k, v in record.metrics.items()]
        param_chunks = [params[i:i + MAX_PARAMS_PER_BATCH] for i in range(0, len(params), MAX_PARAMS_PER_BATCH)]
        metric_chunks = [metrics[i:i + MAX_METRICS_PER_BATCH] for i in range(0, len(metrics), MAX_METRICS_PER_BATCH)]
        for i in range(max(len(param_chunks), len(metric_chunks))):
            with_retry(c.log_batch, run_id, params=param_chunks[i] if i < len(param_chunks) else [],
                       metrics=metric_chunks[i] if i < len(metric_chunks) else [])
        if record.dataset:
            with_retry(c.log_inputs, run_id, datasets=[_dataset_input(record.dataset)])
        missing = [a for a in record.artifacts if not Path(a).exists()]
        for artifact in record.artifacts:
            path = Path(artifact)
            if path.is_dir():
                c.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                c.log_artifact(run_id, str(path))
        if missing:  # only possible on a later sync: log_run checks artifacts exist up front
            with_retry(c.set_tag, run_id, "workbench.missing_artifacts", json.dumps(missing)[:8000])
        if terminate:
            with_retry(c.set_terminated, run_id, status=record.status, end_time=record.end_time)
    except BaseException:
        with contextlib.suppress(Exception):
            c.delete_run(run_id)
        raise
    return run_id


def _store_or_queue(record: RunRecord, terminate: bool = True) -> str | None:
    uri = tracking_uri()
    reason = unreachable_reason(uri)
    if reason is None:
        try:
            return store_record(record, terminate=terminate)
        except Exception as exc:  # any store failure: the run must not be lost
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    record.tracking_uri, record.error = uri, reason
    path = write_entry(record)
    if not record.is_parent:  # a parent warns once at its end, counting its children
        warnings.warn(TrackingUnavailableWarning(
            f"tracking store {uri} unavailable ({reason}); run '{record.run_name}' kept in {path}; "
            f"log it later with `workbench runs sync`"), stacklevel=3)
    return None


_experiment_ids: dict[tuple[str, str], str] = {}


def _experiment_id(c: "MlflowClient", name: str) -> str:
    key = (c.tracking_uri, name)
    if key not in _experiment_ids:
        _experiment_ids[key] = ensure_experiment(c, name)
    return _experiment_ids[key]


def _record(experiment: str, run_name: str, params: Mapping[str, Any] | None,
            metrics: Mapping[str, Any] | None, tags: Mapping[str, Any] | None,
            artifacts: Sequence[str | Path], dataset: Mapping[str, str] | None,
            command: str | None) -> RunRecord:
    """Validate the inputs into a :class:`RunRecord` (raises TrackingError naming the bad item)."""
    if not experiment or not isinstance(experiment, str):
        raise TrackingError(f"experiment name must be a non-empty string, got {experiment!r}")
    clean_metrics: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if value is None:  # not measured
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TrackingError(f"metric {key!r} of run {run_name!r} is not a number: {value!r}") from None
        if math.isinf(number):
            raise TrackingError(f"metric {key!r} of run {run_name!r} is infinite")
        clean_metrics[key_name(key)] = number
    clean_params = {key_name(k): _param_value(v) for k, v in (params or {}).items() if v is not None}
    for key, value in clean_params.items():
        if len(value) > 6000:
            raise TrackingError(f"param {key!r} of run {run_name!r} is {len(value)} characters; mlflow keeps "
                                f"at most 6000 (log it as an artifact)")
    paths = [str(Path(a).resolve()) for a in artifacts]
    for path in paths:
        if not Path(path).exists():
            raise TrackingError(f"artifact {path} of run {run_name!r} does not exist (write results locally "
                                f"before logging them)")
    all_tags = run_tags(command)
    all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    clean_dataset = None
    if dataset is not None:
        missing = {"name", "digest"} - set(dataset)
        if missing:
            raise TrackingError(f"dataset of run {run_name!r} lacks {sorted(missing)}; got {sorted(dataset)}")
        clean_dataset = {k: str(v) for k, v in dataset.items()}
        all_tags["workbench.dataset.name"] = clean_dataset["name"]
        all_tags["workbench.dataset.digest"] = clean_dataset["digest"]
    return RunRecord(experiment=experiment, run_name=run_name, params=clean_params, metrics=clean_metrics,
                     tags=all_tags, artifacts=paths, dataset=clean_dataset)


def key_name(key: Any) -> str:
    """A param/metric name MLflow accepts: ``ndcg@10`` -> ``ndcg_at_10``; other characters outside
    letters, digits, ``_ - . : /`` and space become ``_``."""
    name = _BAD_KEY_CHARS.sub("_", str(key).replace("@", "_at_"))
    if not name or len(name) > 250:
        raise TrackingError(f"param/metric name {key!r} must have 1 to 250 characters")
    return name


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _dataset_input(dataset: Mapping[str, str]):
    """An ``mlflow.entities.DatasetInput``; the full digest goes in the profile (mlflow's column is short)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = dataset.get("source", "")
    entity = Dataset(name=dataset["name"], digest=dataset["digest"][:MAX_DIGEST_CHARS], source_type="local",
                     source=json.dumps({"uri": source}),
                     profile=json.dumps({"sha256": dataset["digest"], **{k: v for k, v in dataset.items()
                                                                         if k not in ("name", "digest", "source",
                                                                                      "context")}}))
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", dataset.get("context", "eval"))])


def _now() -> int:
    return int(time.time() * 1000)
