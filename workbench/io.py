"""Atomic writes and checksums, so that nothing measured or stored is lost on a failure."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from workbench.errors import OutputError, ResultsIntegrityError

# Kernel filesystems: writes there fail part-way or do something other than store a file.
_SPECIAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
_umask_lock = threading.Lock()


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0666 without the process's umask."""
    with _umask_lock:  # reading the umask means setting it; keep other threads from seeing the 0
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create folder ``path`` if needed and prove a file can be written in it, before any work starts.

    Raises :class:`OutputError` in one line naming the folder and why: under a regular file, in /proc or
    /sys, not a folder, not writable.
    """
    folder = Path(path).expanduser().absolute()
    for special in _SPECIAL_ROOTS:
        if folder == special or special in folder.parents:
            raise OutputError(f"{what} {folder} is in {special}, a kernel filesystem; choose a folder on disk")
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                where = "is" if parent == folder else f"is under {parent}, which is"
                raise OutputError(f"{what} {folder} {where} a regular file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {folder} cannot be written: {exc.strerror or exc}") from None
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename.

    ``fsync=False`` is for entries whose checksum is verified on load (a cache): a torn write after a
    crash is then detected and recomputed, and we skip a disk sync per entry.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; others may read what a plain write would let them
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, written atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        return _json_safe(obj.item())
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (no NaN), written atomically."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sidecar(path: str | os.PathLike) -> Path:
    """The checksum file of ``path``: ``<name>.sha256`` beside it (``sha256sum -c`` format)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_checked(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` and its SHA-256 sidecar, each atomically; the sidecar first, so that a crash between
    the two leaves a mismatch (detected) rather than a file with a stale checksum that matches."""
    path = Path(path)
    atomic_write_text(sidecar(path), f"{sha256_bytes(data)}  {path.name}\n")
    return atomic_write_bytes(path, data)


def read_checked(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, verified against its sidecar (a file without one is read as is: written
    before checksums existed). Raises :class:`ResultsIntegrityError` naming both digests on a mismatch."""
    path = Path(path)
    data = path.read_bytes()
    side = sidecar(path)
    if side.is_file():
        expected = (side.read_text().split() or [""])[0]
        actual = sha256_bytes(data)
        if actual != expected:
            raise ResultsIntegrityError(f"{path} is damaged: its SHA-256 is {actual[:16]}..., the checksum in "
                                        f"{side.name} is {expected[:16]}...; delete both to measure again")
    return data


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
