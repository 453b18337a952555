"""A shared MLflow tracking server: ``mlflow server`` on loopback, its backend store a PostgreSQL database of
its own, its artifacts in a local folder that it serves over HTTP (clients upload through the server,
``mlflow-artifacts:/``, so they need no access to that folder).

The backend is the database ``mlflow`` (created if missing) on the project's PostgreSQL
(:func:`workbench.services.postgres.ensure_server`: the embedded server on a Unix socket, or
``WORKBENCH_PG_URI``), or the database a ``backend_uri`` names on any PostgreSQL server. mlflow's alembic
migrations run through SQLAlchemy's psycopg 3 dialect, ``postgresql+psycopg://user@/mlflow?host=/socket/dir``
(a Unix socket goes in the ``host`` query parameter). mlflow's GenAI job runner (seven ``huey`` consumer
processes that this workbench never uses) is off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is set.

Lifetime: :class:`TrackingServer` starts the server in a process group of its own (so a terminal's Ctrl-C
reaches the workbench, which stops the server in order) that receives SIGTERM if the starting thread dies
(Linux), and stops it with SIGTERM (mlflow forwards it to uvicorn), then SIGKILL after
:data:`STOP_TIMEOUT_S`. The embedded PostgreSQL follows :mod:`~workbench.services.postgres`'s rule: it stops
when the last workbench process using it exits, unless ``workbench pg start`` keeps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workbench.errors import TrackingError
from workbench.services import postgres

HOST = "127.0.0.1"                 # loopback only: a team puts its own proxy and auth in front
DEFAULT_PORT = 5000                # mlflow's own default
DATABASE = "mlflow"
START_TIMEOUT_S = 180.0            # ~12 s on a quiet 2-core machine, over 40 s under heavy load
STOP_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1
_SCHEMES = ("postgresql://", "postgres://")
_DRIVER_SCHEME = re.compile(r"^postgres(ql)?\+\w+://")
_MAINTENANCE_DB = "postgres"


def sqlalchemy_uri(conninfo: str) -> str:
    """The SQLAlchemy (psycopg 3 dialect) URI mlflow needs for a libpq URI or ``key=value`` string."""
    from sqlalchemy.engine import URL

    parts = _parts(conninfo)
    host = parts.pop("host", None)
    query = {k: v for k, v in parts.items() if k not in ("user", "password", "port", "dbname")}
    if host and host.startswith("/"):                  # a Unix socket directory
        query["host"], host = host, None
    url = URL.create("postgresql+psycopg", username=parts.get("user"), password=parts.get("password"),
                     host=host, port=int(parts["port"]) if parts.get("port") else None,
                     database=parts.get("dbname"), query=query)
    return url.render_as_string(hide_password=False)


def _parts(conninfo: str) -> dict[str, str]:
    """libpq's fields of ``conninfo`` (an SQLAlchemy ``postgresql+driver://`` URI is read as ``postgresql://``)."""
    text = _DRIVER_SCHEME.sub("postgresql://", conninfo.strip())
    if "://" in text and not text.startswith(_SCHEMES):
        raise TrackingError(f"backend URI {postgres.redact(text)} is not a PostgreSQL URI: expected "
                            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgresql+psycopg://...)")
    try:
        return {k: str(v) for k, v in conninfo_to_dict(text).items()}
    except psycopg.Error as exc:
        raise TrackingError(f"backend URI {postgres.redact(text)} is not a PostgreSQL URI: "
                            f"{_one_line(exc)}") from None


def _conninfo(parts: dict[str, str], dbname: str) -> str:
    return make_conninfo(**{**parts, "dbname": dbname})


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__


def ensure_database(conninfo: str, default: str = DATABASE) -> str:
    """The conninfo of the database ``conninfo`` names (``default`` when it names none, or names the
    maintenance database ``postgres``), created through the maintenance database if missing."""
    parts = _parts(conninfo)
    dbname = parts.get("dbname") or default
    if dbname == _MAINTENANCE_DB:       # the server's own; mlflow's tables get a database of their own
        dbname = default
    target = _conninfo(parts, dbname)
    try:
        _connect(target).close()
        return target
    except psycopg.Error as exc:
        if f'database "{dbname}" does not exist' not in str(exc):
            raise TrackingError(f"cannot connect to the backend database {postgres.redact(target)}: "
                                f"{_one_line(exc)}") from None
    try:
        with _connect(_conninfo(parts, _MAINTENANCE_DB)) as conn:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):      # another server created it meanwhile
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.Error as exc:
        raise TrackingError(f"backend database {postgres.redact(target)} does not exist and cannot be created: "
                            f"{_one_line(exc)}") from None
    return target


def _connect(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=postgres.CONNECT_TIMEOUT_S)


def check_port_free(port: int) -> None:
    """Raise :class:`TrackingError` naming the holder if something listens on ``HOST:port``."""
    if not 0 < port < 65536:
        raise TrackingError(f"--port must be in 1..65535, got {port}")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as uvicorn binds: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise TrackingError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None
            raise TrackingError(f"port {port} on {HOST} is in use{_holder(port)}: pick another with --port") \
                from None


def _holder(port: int) -> str:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f" (PID {conn.pid}, {psutil.Process(conn.pid).name()})"
    return ""


def check_artifacts(folder: str | Path) -> Path:
    """The artifact folder, created if missing; raise :class:`TrackingError` if the server could not
    write there."""
    path = Path(folder).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrackingError(f"artifact folder {path} is not writable ({exc.strerror or exc}): pass "
                            "--artifacts DIR with a folder you can write") from None
    return path


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies (a killed workbench leaves
    no orphaned server)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# resolved before any fork: a child between fork and exec should call nothing that may allocate
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


class TrackingServer:
    """``mlflow server`` on ``127.0.0.1:port`` with a PostgreSQL backend and served artifacts (see the
    module docstring); its output goes to ``log`` (default ``mlflow-server-PORT.log`` beside the artifact
    folder). A context manager; ``start()`` returns once ``/health`` answers, and may be called again after
    ``stop()`` or ``kill()`` (same port, backend and artifacts)."""

    def __init__(self, artifacts: str | Path, port: int = DEFAULT_PORT, backend_uri: str | None = None,
                 database: str = DATABASE, workers: int = 1, log: str | Path | None = None,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        self.artifacts, self.port, self.database, self.workers = Path(artifacts), port, database, workers
        self.backend_uri = backend_uri      # None: the project's PostgreSQL
        self.log = Path(log) if log is not None else self.artifacts.parent / f"mlflow-server-{port}.log"
        self.start_timeout = start_timeout
        self.backend: str | None = None     # the SQLAlchemy URI the server runs on, once started
        self.postgres: postgres.ServerInfo | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0                # where this start's lines begin in the (appended) log

    @property
    def uri(self) -> str:
        """The tracking URI clients use (``MLFLOW_TRACKING_URI``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def version(self) -> str:
        return importlib.metadata.version("mlflow")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "TrackingServer":
        """Check the port, the artifact folder and the backend, start the server, wait for ``/health``.
        Raises :class:`TrackingError` (or the PostgreSQL service's ``DatabaseError``) in one line."""
        if self.alive():
            return self
        began = time.monotonic()
        check_port_free(self.port)
        self.artifacts = check_artifacts(self.artifacts)
        if self.backend_uri is None:
            self.postgres = postgres.ensure_server()
            conninfo = self.postgres.uri
        else:
            conninfo = self.backend_uri
        self.backend = sqlalchemy_uri(ensure_database(conninfo, self.database))
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(self.port),
               "--default-artifact-root", "mlflow-artifacts:/", "--artifacts-destination", str(self.artifacts),
               "--serve-artifacts", "--workers", str(self.workers)]
        # The server's stores are its settings: a client's tracking URI in this environment must not leak
        # in, and the backend goes in the environment (mlflow's --backend-store-uri variable), where `ps`
        # does not show its password.
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        env["MLFLOW_BACKEND_STORE_URI"] = self.backend
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "ab")
        self._log_offset = self._log_file.tell()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, env=env, cwd=self.artifacts,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._wait_healthy(began)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _wait_healthy(self, began: float) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never a proxy
        while True:
            rc = self._proc.poll() if self._proc is not None else None
            if rc is not None:
                raise TrackingError(f"mlflow server on port {self.port} exited with code {rc} before answering: "
                                    f"{self.last_error()} (log: {self.log})")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with opener.open(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            if time.monotonic() - began > self.start_timeout:
                raise TrackingError(f"mlflow server on port {self.port} did not answer {self.uri}/health within "
                                    f"{self.start_timeout:.0f} s (log: {self.log})")
            time.sleep(0.2)

    def last_error(self) -> str:
        """The last error line this start wrote to the server log (why it did not start, or stopped)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self._log_offset)
                lines = f.read().decode(errors="replace").splitlines()[-200:]
        except OSError:
            return "no server log"
        bad = [line.strip() for line in lines if re.search(r"error|exception|refused|denied", line, re.I)
               and not line.lstrip().startswith(("File ", "raise ", "^"))]
        return (bad or [line.strip() for line in lines if line.strip()] or ["empty server log"])[-1][:400]

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        if self._proc is None:
            raise TrackingError("the tracking server was not started")
        return self._proc.wait()

    def stop(self) -> None:
        """SIGTERM (mlflow stops uvicorn), SIGKILL to the whole group after :data:`STOP_TIMEOUT_S`."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, as a crash would (fault tests)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "TrackingServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
