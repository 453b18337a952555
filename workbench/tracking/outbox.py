"""The local outbox: runs the store could not take wait here as JSON files until ``workbench runs sync``.

One file per run, named so that sorting by name is creation order. A parent run's file is written when the
sweep starts and rewritten when it ends, so a crash mid-sweep still keeps it. Sync claims a file by renaming
it, so two concurrent syncs never log the same run twice.

The outbox is a journal, so a sync killed at any point can be resumed: every run carries its outbox id as
the tag ``workbench.outbox_id`` (a run already in the store is not logged again), and the id -> run id of
each logged entry is written to ``synced/<outbox id>`` before the entry is deleted (its children are
linked through it).

A run already in the store whose end the store refused (a sweep's parent: its status and end time, and any
outputs that failed) waits as an ``"end"`` entry naming its run id; sync applies it idempotently
(:func:`~workbench.tracking.record.apply_end`), and ``end_stale_runs`` leaves such a run alone.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import TrackingError
from workbench.io import atomic_write_json, atomic_write_text
from workbench.tracking.record import OUTBOX_TAG, RunRecord, apply_end, experiment_id, store_record
from workbench.tracking.store import Store, unreachable_reason, with_retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

SYNCED = "synced"  # folder of the outbox id -> run id map
PAUSE_SETTING = "WORKBENCH_SYNC_PAUSE_AFTER"  # fault tests: stop for ever after N runs reach the store


def entry_path(outbox: Path, record: RunRecord) -> Path:
    """The file of ``record`` in ``outbox`` (stable, so a parent's file is rewritten in place)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(record.start_time / 1000))
    return outbox / f"{stamp}-{record.start_time % 1000:03d}-{record.local_id}.json"


def write_entry(outbox: Path, record: RunRecord) -> Path:
    """Write (or rewrite) ``record`` to ``outbox`` atomically; returns its path."""
    return atomic_write_json(entry_path(outbox, record), asdict(record))


def pending(folder: Path) -> list[Path]:
    """Files in the outbox ``folder`` waiting to be logged, oldest first (files claimed by a sync that died
    are put back)."""
    if not folder.is_dir():
        return []
    for claimed in folder.glob("*.json.syncing-*"):
        if not pid_alive(int(claimed.name.rsplit("-", 1)[1])):
            release(claimed)
    return sorted(folder.glob("*.json"))


def pending_ends(folder: Path) -> set[str]:
    """Run ids whose end (status, end time, outputs) waits in the outbox ``folder``."""
    ids = set()
    for path in pending(folder):
        try:
            record = RunRecord.from_json(path)
        except TrackingError:  # sync reports a damaged file
            continue
        if record.kind == "end" and record.run_id:
            ids.add(record.run_id)
    return ids


def writer_alive(record: RunRecord) -> bool:
    """True if another live process on this host wrote ``record`` (its parent run may still be growing)."""
    if record.host != socket.gethostname() or record.pid == os.getpid():
        return False
    return pid_alive(record.pid)


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(path: Path) -> Path | None:
    """Rename ``path`` so no other sync takes it (rename is atomic); None if another sync got it first."""
    claimed = path.with_name(f"{path.name}.syncing-{os.getpid()}")
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def release(claimed: Path) -> None:
    """Put a claimed file back after a failed sync."""
    os.replace(claimed, claimed.with_name(claimed.name.rsplit(".syncing-", 1)[0]))


@dataclass
class SyncReport:
    """What ``sync`` did: run ids logged per outbox file, files that failed (with why), that wait for a
    live sweep (skipped) or that cannot be logged until something else is (stuck)."""

    logged: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)


def synced_ids(outbox: Path) -> dict[str, str]:
    """Outbox id -> run id of the entries already logged from ``outbox``."""
    folder = outbox / SYNCED
    if not folder.is_dir():
        return {}
    return {p.name: p.read_text().strip() for p in folder.iterdir() if not p.name.startswith(".")}


def sync(store: Store) -> SyncReport:
    """Log every run of ``store``'s outbox to it, parents before children, and delete the logged files.

    A parent run still open in a live process is left for a later sync; one whose process died is logged
    as KILLED. A failing run stays in the outbox and the rest go on. Resumable after a kill at any point
    (see the module docstring).
    """
    report = SyncReport()
    paths = pending(store.outbox)
    if not paths:
        return report
    reason = unreachable_reason(store.uri, ttl=0)
    if reason:
        raise TrackingError(f"cannot sync {len(paths)} outbox runs to {store.uri}: {reason}")
    mlflow_client = store.client()
    records = []
    for path in paths:
        try:
            records.append((path, RunRecord.from_json(path)))
        except TrackingError as exc:  # a damaged file stays for a look; the others are logged
            report.failed[str(path)] = str(exc)
    # Parents first so children can be linked to their new run ids.
    records.sort(key=lambda pr: (not pr[1].is_parent, pr[0].name))
    new_ids = synced_ids(store.outbox)
    waiting = {r.local_id for p, r in records
               if (r.is_parent or r.kind == "end") and r.status == "RUNNING" and writer_alive(r)}
    for path, record in records:
        if record.local_id in waiting:
            report.skipped[str(path)] = f"sweep still running in process {record.pid}"
            continue
        if record.is_parent and record.status == "RUNNING":
            record.status = "KILLED"
        if record.parent_local_id is not None:
            if record.parent_local_id not in new_ids:
                why = f"its parent run {record.parent_local_id} is not logged yet"
                if record.parent_local_id in waiting:
                    report.skipped[str(path)] = why
                else:
                    report.stuck[str(path)] = why
                continue
            record.parent_run_id = new_ids[record.parent_local_id]
        claimed = claim(path)
        if claimed is None:
            report.skipped[str(path)] = "taken by another sync"
            continue
        try:
            if record.kind == "end":  # idempotent: a sync killed after applying it applies it again
                run_id = apply_end(record, mlflow_client)
            else:
                run_id = new_ids.get(record.local_id) or _logged_run(mlflow_client, record)
                if run_id is None:
                    run_id = store_record(record, mlflow_client)
                    _fault_point(len(report.logged) + 1)
                atomic_write_text(store.outbox / SYNCED / record.local_id, run_id)
                new_ids[record.local_id] = run_id
        except Exception as exc:
            release(claimed)
            report.failed[str(path)] = f"{type(exc).__name__}: {exc}"
            continue
        claimed.unlink()
        report.logged[str(path)] = run_id
    if not pending(store.outbox):  # nothing left that could need a parent's run id
        for marker in (store.outbox / SYNCED).glob("*"):
            marker.unlink(missing_ok=True)
    return report


def _logged_run(c: "MlflowClient", record: RunRecord) -> str | None:
    """The run a previous (killed) sync, or the live path before the store failed, made of ``record``, if
    it finished it; a half-written one is deleted so that it is logged anew. store_record terminates a run
    last, so a half-written run is still RUNNING, or has another status than the record's if
    ``end_stale_runs`` ended it as KILLED after its writer died."""
    found = with_retry(c.search_runs, [experiment_id(c, record.experiment)],
                       f"tags.`{OUTBOX_TAG}` = '{record.local_id}'", max_results=10)
    run_id = None
    for run in found:
        if run.info.status != record.status or run_id is not None:
            with_retry(c.delete_run, run.info.run_id)
        else:
            run_id = run.info.run_id
    return run_id


def _fault_point(stored: int) -> None:
    """Fault tests only: with ``WORKBENCH_SYNC_PAUSE_AFTER=N``, stop for ever once the N-th run is in the
    store and before the outbox knows it (the worst moment to be killed)."""
    after = os.environ.get(PAUSE_SETTING)
    if after and stored >= int(after):
        print(f"sync paused after {stored} runs", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
