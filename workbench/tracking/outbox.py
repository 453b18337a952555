"""The local outbox: runs the store could not take wait here as JSON files until ``workbench runs sync``.

One file per run, named so that sorting by name is creation order. A parent run's file is written when the
sweep starts and rewritten when it ends, so a crash mid-sweep still keeps it. Sync claims a file by renaming
it, so two concurrent syncs never log the same run twice.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import TrackingError
from workbench.io import atomic_write_json
from workbench.tracking.record import RunRecord, store_record
from workbench.tracking.store import Store, client, unreachable_reason


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
        if not _pid_alive(int(claimed.name.rsplit("-", 1)[1])):
            release(claimed)
    return sorted(folder.glob("*.json"))


def writer_alive(record: RunRecord) -> bool:
    """True if another live process on this host wrote ``record`` (its parent run may still be growing)."""
    if record.host != socket.gethostname() or record.pid == os.getpid():
        return False
    return _pid_alive(record.pid)


def _pid_alive(pid: int) -> bool:
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
    """What ``sync`` did: run ids logged per outbox file, files that failed (with why) or were skipped."""

    logged: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def sync(store: Store) -> SyncReport:
    """Log every run of ``store``'s outbox to it, parents before children, and delete the logged files.

    A parent run still open in a live process is left for a later sync; one whose process died is logged
    as KILLED. A failing run stays in the outbox and the rest go on.
    """
    report = SyncReport()
    paths = pending(store.outbox)
    if not paths:
        return report
    reason = unreachable_reason(store.uri, ttl=0)
    if reason:
        raise TrackingError(f"cannot sync {len(paths)} outbox runs to {store.uri}: {reason}")
    mlflow_client = client(store.uri)
    records = []
    for path in paths:
        try:
            records.append((path, RunRecord.from_json(path)))
        except TrackingError as exc:  # a damaged file stays for a look; the others are logged
            report.failed[str(path)] = str(exc)
    # Parents first so children can be linked to their new run ids.
    records.sort(key=lambda pr: (not pr[1].is_parent, pr[0].name))
    new_ids: dict[str, str] = {}
    for path, record in records:
        if record.is_parent and record.status == "RUNNING":
            if writer_alive(record):
                report.skipped[str(path)] = f"sweep still running in process {record.pid}"
                continue
            record.status = "KILLED"
        if record.parent_local_id is not None:
            if record.parent_local_id not in new_ids:
                report.skipped[str(path)] = f"its parent run {record.parent_local_id} is not logged yet"
                continue
            record.parent_run_id = new_ids[record.parent_local_id]
        claimed = claim(path)
        if claimed is None:
            report.skipped[str(path)] = "taken by another sync"
            continue
        try:
            run_id = store_record(record, mlflow_client)
        except Exception as exc:
            release(claimed)
            report.failed[str(path)] = f"{type(exc).__name__}: {exc}"
            continue
        claimed.unlink()
        new_ids[record.local_id] = run_id
        report.logged[str(path)] = run_id
    return report
