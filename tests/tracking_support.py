"""Throw-away MLflow stores for the tracking tests.

Creating an MLflow SQLite schema runs ~50 migrations (seconds), so one empty store is made per session
and copied (SQLite backup API) for each test that needs a store of its own.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from workbench.tracking.store import Store


@functools.lru_cache(maxsize=1)
def _template() -> Path:
    from workbench.tracking.store import client

    db = Path(tempfile.mkdtemp(prefix="workbench-template-store-")) / "mlflow.db"
    client(f"sqlite:///{db}").search_experiments()  # creates the schema
    return db


def fresh_store(folder: Path) -> str:
    """A new empty store at ``folder/mlflow.db`` (artifacts beside it); returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    with sqlite3.connect(_template()) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    return f"sqlite:///{db}"


def use_store(monkeypatch, folder: Path) -> Store:
    """A fresh store under ``folder`` (outbox beside it), also made the settings (``MLFLOW_TRACKING_URI``,
    ``WORKBENCH_OUTBOX``) that the CLI and subprocesses resolve it from."""
    store = Store(fresh_store(folder / "store"), folder / "outbox")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("WORKBENCH_OUTBOX", str(store.outbox))
    return store


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment (with the test's store settings) plus ``extra``."""
    return {**os.environ, **extra}
