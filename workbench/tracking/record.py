"""One run as data: the validated :class:`RunRecord` and how a record is written to a store.

Both the live path (``runs.log_run``) and the outbox's later sync write through :func:`store_record`, so a
run looks the same in the store whichever way it arrived. A record of kind ``"end"`` is not a run but the
end of one already in the store (a sweep's parent whose terminate, or whose outputs, the store refused):
:func:`apply_end` writes it, idempotently.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from workbench.errors import TrackingError
from workbench.tracking.context import run_tags
from workbench.tracking.store import ensure_experiment, is_server_unreachable, with_retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
OUTBOX_TAG = "workbench.outbox_id"  # a record's local id: a resumed sync never logs a run twice
MAX_PARAMS_PER_BATCH = 100    # mlflow's limit for params (and tags) in one log_batch
MAX_METRICS_PER_BATCH = 900   # mlflow allows 1000 entities in one log_batch, 100 of them params
MAX_DIGEST_CHARS = 32         # mlflow stores dataset digests in a 36-character column
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")


@dataclass
class RunRecord:
    """Everything needed to log one run later (the JSON shape of an outbox file)."""

    experiment: str
    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    outputs: dict[str, list[str]] = field(default_factory=dict)  # artifact folder -> files attached to a sweep
    dataset: dict[str, str] | None = None
    parent_run_id: str | None = None      # a run already in the store
    parent_local_id: str | None = None    # a parent that is itself waiting in the outbox
    is_parent: bool = False
    status: str = "FINISHED"
    start_time: int = field(default_factory=lambda: now_ms())
    end_time: int | None = None
    local_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    tracking_uri: str = ""
    error: str = ""
    kind: str = "run"                     # "end": the end (status, outputs) of the stored run ``run_id``
    run_id: str | None = None

    @classmethod
    def from_json(cls, path: Path) -> "RunRecord":
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise TrackingError(f"outbox file {path} is not a run record: {exc}") from exc


def now_ms() -> int:
    return int(time.time() * 1000)


def make_record(experiment: str, run_name: str, params: Mapping[str, Any] | None = None,
                metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                artifacts: Sequence[str | Path] = (), dataset: Mapping[str, str] | None = None,
                command: str | None = None) -> RunRecord:
    """Validate the inputs into a :class:`RunRecord` (raises TrackingError naming the bad item)."""
    if not experiment or not isinstance(experiment, str):
        raise TrackingError(f"experiment name must be a non-empty string, got {experiment!r}")
    clean_params = {key_name(k): _param_value(v) for k, v in (params or {}).items() if v is not None}
    for key, value in clean_params.items():
        if len(value) > 6000:
            raise TrackingError(f"param {key!r} of run {run_name!r} is {len(value)} characters; mlflow keeps "
                                f"at most 6000 (log it as an artifact)")
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
    return RunRecord(experiment=experiment, run_name=run_name, params=clean_params,
                     metrics=clean_metrics(metrics, run_name), tags=all_tags,
                     artifacts=existing_paths(artifacts, run_name), dataset=clean_dataset)


def clean_metrics(metrics: Mapping[str, Any] | None, run_name: str) -> dict[str, float]:
    """Numbers under names MLflow accepts; ``None`` means not measured and is left out; NaN is kept."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TrackingError(f"metric {key!r} of run {run_name!r} is not a number: {value!r}") from None
        if math.isinf(number):
            raise TrackingError(f"metric {key!r} of run {run_name!r} is infinite")
        out[key_name(key)] = number
    return out


def existing_paths(artifacts: Sequence[str | Path], run_name: str) -> list[str]:
    """Absolute paths of ``artifacts``, each of which must exist already."""
    paths = [str(Path(a).resolve()) for a in artifacts]
    for path in paths:
        if not Path(path).exists():
            raise TrackingError(f"artifact {path} of run {run_name!r} does not exist (write results locally "
                                f"before logging them)")
    return paths


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


def store_record(record: RunRecord, mlflow_client: "MlflowClient", terminate: bool = True) -> str:
    """Write ``record`` to the store (retrying while SQLite is locked); returns the new run id.

    If a step after the run's creation fails, the half-written run is deleted before the error propagates,
    so a later sync does not leave a duplicate (a server that stopped answering cannot delete it: the sync
    that logs the record again does, see ``outbox._logged_run``).
    """
    from mlflow.entities import Param

    c = mlflow_client
    tags = {**record.tags, OUTBOX_TAG: record.local_id}
    if record.parent_run_id:
        tags[PARENT_TAG] = record.parent_run_id
    run = with_retry(c.create_run, experiment_id(c, record.experiment), start_time=record.start_time, tags=tags,
                     run_name=record.run_name)
    run_id = run.info.run_id
    try:
        params = [Param(k, v) for k, v in record.params.items()]
        log_metrics(c, run_id, record.metrics, record.end_time or record.start_time, params)
        if record.dataset:
            with_retry(c.log_inputs, run_id, datasets=[_dataset_input(record.dataset)])
        missing = log_files(c, run_id, record.artifacts)
        for folder, paths in record.outputs.items():
            missing += log_files(c, run_id, paths, folder)
        if missing:  # only possible on a later sync: log_run checks artifacts exist up front
            with_retry(c.set_tag, run_id, "workbench.missing_artifacts", json.dumps(missing)[:8000])
        if terminate:
            with_retry(c.set_terminated, run_id, status=record.status, end_time=record.end_time)
    except BaseException as exc:
        if not is_server_unreachable(exc):  # a dead server cannot delete it: sync deletes it (_logged_run)
            with contextlib.suppress(Exception):
                c.delete_run(run_id)
        raise
    return run_id


def end_record(parent: RunRecord, run_id: str, tracking_uri: str) -> RunRecord:
    """An ``"end"`` entry for ``parent``, stored as ``run_id``: status RUNNING (not ended yet) until the
    sweep sets it; outputs and metrics the store refused are added to it."""
    return RunRecord(experiment=parent.experiment, run_name=parent.run_name, status="RUNNING", kind="end",
                     run_id=run_id, tracking_uri=tracking_uri)


def apply_end(record: RunRecord, mlflow_client: "MlflowClient") -> str:
    """Write an ``"end"`` entry to its run; returns the run id. Applying it twice is harmless: metrics carry
    the entry's fixed timestamp (mlflow drops exact duplicates), files overwrite themselves, and a run that
    already has the entry's status is left alone. An entry still RUNNING (its sweep's process died) ends a
    run that is still RUNNING as KILLED and leaves an ended one as it is."""
    c, run_id = mlflow_client, record.run_id
    if not run_id:
        raise TrackingError(f"end entry of run {record.run_name!r} names no run id")
    run = with_retry(c.get_run, run_id)
    log_metrics(c, run_id, record.metrics, record.start_time)
    missing = [p for folder, paths in record.outputs.items() for p in log_files(c, run_id, paths, folder)]
    if missing:
        with_retry(c.set_tag, run_id, "workbench.missing_artifacts", json.dumps(missing)[:8000])
    status = "KILLED" if record.status == "RUNNING" else record.status
    if run.info.status != status and (record.status != "RUNNING" or run.info.status == "RUNNING"):
        with_retry(c.set_terminated, run_id, status=status, end_time=record.end_time or now_ms())
    return run_id


def log_metrics(c: "MlflowClient", run_id: str, metrics: Mapping[str, float], timestamp: int,
                params: Sequence[Any] = ()) -> None:
    """Params and metrics in as few ``log_batch`` calls as mlflow's limits allow."""
    from mlflow.entities import Metric

    entries = [Metric(k, v, timestamp, 0) for k, v in metrics.items()]
    param_chunks = [params[i:i + MAX_PARAMS_PER_BATCH] for i in range(0, len(params), MAX_PARAMS_PER_BATCH)]
    metric_chunks = [entries[i:i + MAX_METRICS_PER_BATCH] for i in range(0, len(entries), MAX_METRICS_PER_BATCH)]
    for i in range(max(len(param_chunks), len(metric_chunks))):
        with_retry(c.log_batch, run_id, params=param_chunks[i] if i < len(param_chunks) else [],
                   metrics=metric_chunks[i] if i < len(metric_chunks) else [])


def log_files(c: "MlflowClient", run_id: str, paths: Sequence[str], folder: str | None = None) -> list[str]:
    """Log files and folders (a folder under its own name) as artifacts, in ``folder`` when given; returns
    the paths that no longer exist."""
    missing = []
    for artifact in paths:
        path = Path(artifact)
        if path.is_dir():
            with_retry(c.log_artifacts, run_id, str(path), artifact_path=f"{folder}/{path.name}" if folder
                       else path.name)
        elif path.is_file():
            with_retry(c.log_artifact, run_id, str(path), artifact_path=folder)
        else:
            missing.append(artifact)
    return missing


_experiment_ids: dict[tuple[str, str], str] = {}


def experiment_id(c: "MlflowClient", name: str) -> str:
    """The id of experiment ``name`` in ``c``'s store (created on first use; cached per store)."""
    key = (c.tracking_uri, name)
    if key not in _experiment_ids:
        _experiment_ids[key] = ensure_experiment(c, name)
    return _experiment_ids[key]


def _dataset_input(dataset: Mapping[str, str]) -> Any:
    """An ``mlflow.entities.DatasetInput``; the full digest goes in the profile (mlflow's column is short)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = dataset.get("source", "")
    profile = {"sha256": dataset["digest"],
               **{k: v for k, v in dataset.items() if k not in ("name", "digest", "source", "context")}}
    entity = Dataset(name=dataset["name"], digest=dataset["digest"][:MAX_DIGEST_CHARS], source_type="local",
                     source=json.dumps({"uri": source}), profile=json.dumps(profile))
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", dataset.get("context", "eval"))])
