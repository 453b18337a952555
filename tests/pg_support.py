"""A real PostgreSQL for the pgvector tests and small brute-force references.

``pg_server`` (module scope) starts the embedded server in a temporary data directory (``WORKBENCH_CACHE``
pointed there, ``WORKBENCH_PG_URI`` unset, so the code under test takes its default path) and stops it at
the end of the module. Server folders live outside pytest's temporary root: pytest resets that root to mode
0700 whenever a session starts (another one, on a shared machine), which would lock the server's own user
(``pgserver`` when tests run as root) out of the folder of a running server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest

from workbench.index import spec as spec_module
from workbench.services import postgres


@contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@contextmanager
def server_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="workbench-pgtest-"))
    try:
        yield folder
    finally:
        postgres.stop_server(folder / "postgres" / "data")     # whatever a failing test left running
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(name="pg_dir")
def pg_dir_fixture() -> Iterator[Path]:
    """An empty folder for a server of the test's own (the cache root: data goes in ``postgres/data``)."""
    with server_folder() as folder:
        yield folder


@pytest.fixture(scope="module", name="pg_server")
def pg_server_fixture() -> Iterator[postgres.ServerInfo]:
    with server_folder() as root, env(WORKBENCH_CACHE=str(root), WORKBENCH_PG_URI=None):
        info = postgres.ensure_server()
        try:
            yield info
        finally:
            postgres.stop_server()


@pytest.fixture(name="pgvector_registered")
def pgvector_registered_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pgvector library in the SPEC registry (a no-op once the registry lists it)."""
    monkeypatch.setitem(spec_module.LIBRARIES, "pgvector", "workbench.index.pgvector:PgvectorIndex")


def workbench_tables(uri: str) -> list[str]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'wb\\_%'")]


def clustered(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters (like embeddings, unlike uniform noise, binary codes keep their neighbours)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim))
    base = centers[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    queries = centers[rng.integers(0, 20, n_queries)] + 0.5 * rng.standard_normal((n_queries, dim))
    return base.astype(np.float32), queries.astype(np.float32)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(scores, ids)`` in float64: similarity for cosine/ip, squared distance for l2."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        b, q = b / np.linalg.norm(b, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        s = -(np.sum(q**2, 1)[:, None] - 2 * q @ b.T + np.sum(b**2, 1)[None, :])
    else:
        s = q @ b.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, ids, 1)
    return (-top if metric == "l2" else top), ids


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k].tolist()) & set(t.tolist())) / k for a, t in zip(ids, truth)]))
