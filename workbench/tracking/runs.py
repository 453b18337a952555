"""Logging runs: batched parameters and metrics, context tags, dataset inputs, artifacts, nested sweeps.

The ``MlflowClient`` API is used rather than mlflow's fluent active-run stack: a run is written in three
calls (create with all tags, one batch of params+metrics, terminate), which keeps logging fast on SQLite
(``workbench tracking-bench`` measures it), and no global active-run state leaks between sweeps. Every call
names its :class:`~workbench.tracking.store.Store`. If the store is unreachable or stays locked after
retries, the run goes to the store's outbox (``workbench runs sync`` logs it later); so does the end of a
sweep's parent that is in the store but cannot be terminated (or take its outputs) now, as an ``"end"``
entry, so that the parent is not later taken for a killed sweep.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from workbench.errors import TrackingError, TrackingUnavailableWarning
from workbench.tracking.outbox import pending_ends, pid_alive, write_entry
from workbench.tracking.record import (
    RunRecord,
    clean_metrics,
    end_record,
    existing_paths,
    log_files,
    log_metrics,
    make_record,
    now_ms,
    store_record,
)
from workbench.tracking.store import Store, give_up_on, is_locked_error, lock_message, unreachable_reason, with_retry

STALE_LIMIT = 1000  # RUNNING runs looked at per stale-run check


@dataclass
class _Parent:
    store: Store
    record: RunRecord                # what the outbox holds while the parent waits there (run_id None)
    run_id: str | None               # set when the parent is in the store
    queued_children: int = 0
    end: RunRecord | None = None     # the parent's "end" entry in the outbox, once the store refused part of it


_current_parent: ContextVar[_Parent | None] = ContextVar("workbench_tracking_parent", default=None)


def log_run(store: Store, experiment: str, run_name: str, params: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
            artifacts: Sequence[str | Path] = (), dataset: Mapping[str, str] | None = None,
            parent_run_id: str | None = None, command: str | None = None) -> str | None:
    """Log one finished run to ``store``; returns its run id, or None if it was queued in the outbox.

    ``params`` are stringified, ``metrics`` must be numbers (NaN allowed); ``None`` values are left out
    (not measured); names MLflow refuses are mapped (``ndcg@10`` -> ``ndcg_at_10``, see
    :func:`~workbench.tracking.record.key_name`). ``tags`` add to the context tags (git commit and dirty flag,
    library versions, CPU, cores, threads, ``command``). ``artifacts`` are files or folders already written
    locally; a folder is logged under its own name. ``dataset`` (``name``, ``digest``, ``source``, optional
    ``context``) becomes an ``mlflow.log_input``. The run is nested under ``parent_run_id``, else under the
    enclosing :func:`parent_run` of this thread.

    Never raises for an unreachable or locked store: it warns and keeps the run in the outbox.
    Raises :class:`TrackingError` for bad input (before touching the store).
    """
    record = make_record(experiment, run_name, params, metrics, tags, artifacts, dataset, command)
    record.end_time = now_ms()
    if _link_parent(store, record, parent_run_id):
        return None
    return _store_or_queue(store, record)


def _link_parent(store: Store, record: RunRecord, parent_run_id: str | None) -> bool:
    """Set the record's parent (explicit, else the enclosing sweep); True if it was queued with an outboxed
    parent (a child cannot enter the store before its parent, so it waits in the outbox too)."""
    enclosing = _current_parent.get()
    if parent_run_id is None and enclosing is not None:
        if enclosing.run_id is None:
            record.parent_local_id = enclosing.record.local_id
            record.tracking_uri, record.error = store.uri, "parent run is in the outbox"
            write_entry(store.outbox, record)
            enclosing.queued_children += 1
            return True
        parent_run_id = enclosing.run_id
    record.parent_run_id = parent_run_id
    return False


@contextlib.contextmanager
def parent_run(store: Store, experiment: str, run_name: str, params: Mapping[str, Any] | None = None, *,
               tags: Mapping[str, Any] | None = None, command: str | None = None,
               dataset: Mapping[str, str] | None = None,
               parent_run_id: str | None = None) -> Iterator[str | None]:
    """A sweep: a parent run open for the block; :func:`log_run` calls inside it become its children.

    Sweeps nest like runs (under ``parent_run_id``, else the enclosing sweep). Yields the parent's run id,
    or None if the store is unavailable (parent and children then wait in the outbox together, and
    ``workbench runs sync`` restores the nesting). The parent ends FINISHED, or FAILED if the block raises.
    """
    record = make_record(experiment, run_name, params, None, tags, (), dataset, command)
    record.is_parent, record.status = True, "RUNNING"
    run_id = None if _link_parent(store, record, parent_run_id) else _store_or_queue(store, record, terminate=False)
    if run_id is not None:
        end_stale_runs(store, experiment)
    state = _Parent(store=store, record=record, run_id=run_id)
    token = _current_parent.set(state)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        _current_parent.reset(token)
        end = now_ms()
        if run_id is not None:
            _end_in_store(state, status, end)
        else:
            record.status, record.end_time = status, end
            path = write_entry(store.outbox, record)
            _warn(store, f"tracking store {record.tracking_uri} unavailable ({record.error}); sweep "
                         f"'{run_name}' and {state.queued_children} child runs kept in {path.parent}; log them "
                         f"later with `workbench runs sync`", force=True)


def attach_outputs(name: str, artifacts: Sequence[str | Path] = (),
                   metrics: Mapping[str, Any] | None = None) -> None:
    """Log a sweep's outputs on its parent run (the enclosing :func:`parent_run`): ``artifacts`` in the
    artifact folder ``name``, ``metrics`` beside the parent's own.

    Raises :class:`TrackingError` outside a sweep or for bad input. An outboxed parent takes them into its
    record; if the store fails now, they wait in the outbox in the parent's ``"end"`` entry (logged on the
    parent by ``workbench runs sync``).
    """
    enclosing = _current_parent.get()
    if enclosing is None:
        raise TrackingError(f"outputs {name!r} attached outside a sweep: there is no parent run to hold them")
    paths = existing_paths(artifacts, name)
    numbers = clean_metrics(metrics, name)
    if enclosing.run_id is None:
        enclosing.record.outputs.setdefault(name, []).extend(paths)
        enclosing.record.metrics.update(numbers)
        return
    store = enclosing.store
    try:
        if unreachable_reason(store.uri):
            raise TrackingError(unreachable_reason(store.uri))
        c = store.client()
        log_metrics(c, enclosing.run_id, numbers, now_ms())
        log_files(c, enclosing.run_id, paths, name)
    except Exception as exc:  # nothing measured may be lost: keep the outputs in the parent's end entry
        entry = _end_entry(enclosing, lock_message(exc))
        entry.outputs.setdefault(name, []).extend(paths)
        entry.metrics.update(numbers)
        path = write_entry(store.outbox, entry)
        _warn(store, f"could not attach outputs {name!r} to run {enclosing.run_id}: {lock_message(exc)}; kept "
                     f"in {path}; log them later with `workbench runs sync`")


def _end_entry(parent: _Parent, error: str) -> RunRecord:
    """The parent's ``"end"`` entry (made on first need; rewritten in place after that)."""
    if parent.end is None:
        assert parent.run_id is not None
        parent.end = end_record(parent.record, parent.run_id, parent.store.uri)
    parent.end.error = error
    return parent.end


def _end_in_store(parent: _Parent, status: str, end: int) -> None:
    """Terminate a stored parent run as ``status``; if the store refuses, or its outputs wait in the outbox,
    the end goes to the outbox too (``workbench runs sync`` applies it; until then the run is not stale)."""
    store, error = parent.store, None
    try:
        reason = unreachable_reason(store.uri)  # a store given up on is not waited for again
        if reason:
            raise TrackingError(reason)
        with_retry(store.client().set_terminated, parent.run_id, status=status, end_time=end)
    except Exception as exc:
        error = lock_message(exc)
    if error is None and parent.end is None:
        return
    entry = _end_entry(parent, error or parent.end.error)
    entry.status, entry.end_time = status, end
    path = write_entry(store.outbox, entry)
    if error is not None:
        _warn(store, f"could not mark parent run {parent.run_id} ({parent.record.run_name}) {status}: {error}; "
                     f"kept in {path}; log it later with `workbench runs sync`")


def _store_or_queue(store: Store, record: RunRecord, terminate: bool = True) -> str | None:
    reason = unreachable_reason(store.uri)
    if reason is None:
        try:
            return store_record(record, store.client(), terminate=terminate)
        except Exception as exc:  # any store failure: the run must not be lost
            reason = lock_message(exc)
            if is_locked_error(exc):  # it stayed locked for the whole timeout: do not wait again per run
                give_up_on(store.uri, reason)
    record.tracking_uri, record.error = store.uri, reason
    path = write_entry(store.outbox, record)
    if not record.is_parent:  # a parent warns once at its end, counting its children
        _warn(store, f"tracking store {store.uri} unavailable ({reason}); run '{record.run_name}' kept in "
                     f"{path}; this and later runs wait there; log them with `workbench runs sync`")
    return None


_warned: set[str] = set()  # stores this process has warned about


def _warn(store: Store, message: str, force: bool = False) -> None:
    """One warning per store and process (a sweep of many queued runs prints one line), except ``force``
    (a sweep's closing count)."""
    if force or store.uri not in _warned:
        _warned.add(store.uri)
        warnings.warn(TrackingUnavailableWarning(message), stacklevel=3)


def end_stale_runs(store: Store, experiment: str | None = None) -> list[str]:
    """End as KILLED the RUNNING runs (of ``experiment``, else all) whose process died: written on this host
    (tags ``workbench.host``, ``workbench.pid``) by a process that no longer exists, e.g. a killed sweep's
    parent. A run whose end waits in the outbox (the sweep finished while the store was locked) is left for
    ``workbench runs sync``. Returns their run ids; a store failure ends nothing and raises nothing (the next
    call retries)."""
    host, me = socket.gethostname(), os.getpid()
    ended = []
    try:
        c = store.client()
        if experiment is None:
            ids = [e.experiment_id for e in with_retry(c.search_experiments)]
        else:
            exp = with_retry(c.get_experiment_by_name, experiment)
            ids = [exp.experiment_id] if exp is not None else []
        if not ids:
            return []
        queued: set[str] | None = None  # run ids with an end entry in the outbox, read when first needed
        for run in with_retry(c.search_runs, ids, "attributes.status = 'RUNNING'", max_results=STALE_LIMIT):
            tags = run.data.tags
            pid = tags.get("workbench.pid", "")
            if tags.get("workbench.host") == host and pid.isdigit() and int(pid) != me and not pid_alive(int(pid)):
                queued = pending_ends(store.outbox) if queued is None else queued
                if run.info.run_id in queued:
                    continue
                with_retry(c.set_terminated, run.info.run_id, status="KILLED", end_time=now_ms())
                ended.append(run.info.run_id)
    except Exception:  # cleaning up must never stop a sweep or a listing
        return ended
    return ended
