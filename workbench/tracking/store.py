"""Where runs go: the store (tracking URI + outbox), the artifact root, experiments, retries on a locked SQLite.

A :class:`Store` is resolved once, by an entry point (the CLI's command, a runner's caller, a notebook's
parameters), with :meth:`Store.from_settings`, and passed down explicitly: nothing below reads the
environment for it. The default is SQLite at ``<workspace>/.mlflow/mlflow.db`` with artifacts in
``.mlflow/artifacts`` (the workspace: :func:`workbench.config.workspace`; notebooks executed from
``notebooks/`` find the checkout's); ``MLFLOW_TRACKING_URI`` overrides it, so a team's tracking server
(``workbench tracking serve``, or any ``http(s)://`` MLflow server) is one setting. A server that stops
answering costs one call a few seconds (:data:`HTTP_DEFAULTS`), then this process's runs go to the outbox
for :data:`PROBE_TTL_S` before the server is probed again. mlflow is imported inside functions: it
costs ~1.7 s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlparse

from workbench.config import workspace
from workbench.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

# How long one store call may wait for a locked SQLite store before the run goes to the outbox
# (``WORKBENCH_TRACKING_TIMEOUT``): long enough for other writers' commits, short enough that a store held
# by a stuck process costs a sweep seconds, not minutes.
DEFAULT_TIMEOUT_S = 5.0
LOCK_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)  # then 0.8 s until the timeout
# Libraries that log a traceback for every locked attempt; the workbench reports the cause in one line.
_NOISY_LOGGERS = ("mlflow", "mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "sqlalchemy",
                  "alembic")
_LOCKED = re.compile(r"database (table )?is locked|database is busy", re.I)
# mlflow's HTTP client retries a failed request 7 times with exponential backoff (~4 minutes against a
# dead server) and waits 120 s for an answer: a server that died mid-sweep would stall every run that long
# before it reached the outbox. And on every terminate it fetches the run again to print its UI link on
# stdout (breaking ``--json``). mlflow reads these settings from the environment on every request, so
# :func:`client` sets them as defaults there; a user's own values win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
PROBE_TTL_S = 30.0  # how long a store's probe (or a server's failed call) counts before it is probed again
# mlflow's text for a request that failed after its retries (connection refused, reset, timed out, 5xx)
_UNREACHABLE = re.compile(r"API request to (\S+) failed with (timeout )?exception", re.I)
STORE_CHOICES = ("project", "out_dir")


def store_dir() -> Path:
    """The local store folder: ``.mlflow`` in the workspace (see :mod:`workbench.config`)."""
    return workspace() / ".mlflow"


@dataclass(frozen=True)
class Store:
    """A tracking store: where runs go (``uri``) and where they wait while it is unavailable (``outbox``)."""

    uri: str
    outbox: Path
    timeout: float = DEFAULT_TIMEOUT_S  # seconds one call may wait for a locked SQLite store

    @classmethod
    def from_settings(cls, settings: Mapping[str, str] | None = None) -> "Store":
        """The configured store: ``MLFLOW_TRACKING_URI`` (else the workspace's SQLite store),
        ``WORKBENCH_OUTBOX`` (else ``.mlflow/outbox``) and ``WORKBENCH_TRACKING_TIMEOUT`` (seconds to wait
        for a locked store, default 5), read from ``settings`` (default: the environment)."""
        env = os.environ if settings is None else settings
        uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_dir() / 'mlflow.db'}"
        outbox = env.get("WORKBENCH_OUTBOX")
        raw = env.get("WORKBENCH_TRACKING_TIMEOUT") or str(DEFAULT_TIMEOUT_S)
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not timeout > 0 or math.isinf(timeout):
            raise TrackingError(f"WORKBENCH_TRACKING_TIMEOUT must be a positive number of seconds, got {raw!r}")
        return cls(uri, Path(outbox).expanduser() if outbox else store_dir() / "outbox", timeout)

    def client(self) -> "MlflowClient":
        """An ``MlflowClient`` on this store whose calls wait at most ``timeout`` s for a lock."""
        return client(self.uri, self.timeout)

    @classmethod
    def in_folder(cls, folder: str | Path) -> "Store":
        """A SQLite store of its own: ``folder/mlflow.db``, artifacts and outbox beside it."""
        folder = Path(folder).resolve()
        return cls(f"sqlite:///{folder / 'mlflow.db'}", folder / "outbox")


def choose_store(where: str, folder: str | Path) -> Store:
    """A notebook's ``store`` parameter: ``"project"`` is the configured store, ``"out_dir"`` a throw-away
    store in ``folder`` (so CI runs stay out of the project's store)."""
    if where == "project":
        return Store.from_settings()
    if where == "out_dir":
        return Store.in_folder(folder)
    raise TrackingError(f"store must be one of {STORE_CHOICES}, got {where!r}")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri: str) -> str | None:
    """Artifact root for experiments created here: ``artifacts/`` next to a SQLite database; a server decides."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "artifacts").resolve().as_uri()


def is_locked_error(exc: BaseException) -> bool:
    """True for SQLite lock contention (worth retrying), false for everything else."""
    return bool(_LOCKED.search(str(exc)))


def is_server_unreachable(exc: BaseException) -> bool:
    """True when an HTTP store call failed for want of an answer (after mlflow's retries), not for what
    it sent."""
    return bool(_UNREACHABLE.search(str(exc)))


def _unreachable_message(exc: BaseException) -> str:
    """``tracking server URL did not answer (why)`` from mlflow's multi-line urllib3 text."""
    text = str(exc)
    match = _UNREACHABLE.search(text)
    url = match[1].split("/api/", 1)[0] if match else "?"
    for pattern, why in ((r"refused", "connection refused"), (r"timed? ?out", "no answer in time"),
                         (r"reset|aborted|RemoteDisconnected", "connection lost"),
                         (r"too many (\d+) error", r"HTTP \1 errors")):
        found = re.search(pattern, text, re.I)
        if found:
            return f"tracking server {url} did not answer ({found.expand(why)})"
    return f"tracking server {url} did not answer"


def lock_message(exc: BaseException) -> str:
    """One line for a store failure: "database is locked" when it is, "tracking server ... did not
    answer (...)" for a dead server, else the exception's first line (mlflow's text for a lock starts with
    an autoflush note that hides the cause)."""
    if is_locked_error(exc):
        return "database is locked"
    if is_server_unreachable(exc):
        return _unreachable_message(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence mlflow's, SQLAlchemy's and alembic's loggers for a store call: mlflow logs a full traceback
    for every locked attempt, and the caller reports the failure in one line."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def with_retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``, retrying with jittered backoff while SQLite reports the database locked, for at most the
    lock timeout of the store ``fn`` belongs to (a client method's store; else the default). A server that
    did not answer is marked unreachable (:func:`mark_unreachable`) before the error propagates."""
    owner = getattr(fn, "__self__", None)
    uri = getattr(owner, "tracking_uri", None)
    deadline = time.monotonic() + _timeouts.get(uri, DEFAULT_TIMEOUT_S)
    attempt = 0
    while True:
        try:
            with quiet_libraries():
                return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps sqlalchemy's OperationalError in MlflowException
            if uri is not None and is_server_unreachable(exc):
                mark_unreachable(uri, lock_message(exc))
            delay = LOCK_RETRY_DELAYS[min(attempt, len(LOCK_RETRY_DELAYS) - 1)] * (0.5 + random.random())
            if not is_locked_error(exc) or time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)
            attempt += 1


_unavailable: dict[str, str] = {}  # store URI -> why it was given up on in this process


def give_up_on(uri: str, reason: str) -> None:
    """Send the rest of this process's runs for ``uri`` straight to the outbox: a store that stayed locked
    for a whole timeout would otherwise cost every later run the same wait."""
    _unavailable[uri] = reason


_reachable: dict[str, tuple[float, str | None]] = {}


def mark_unreachable(uri: str, reason: str) -> None:
    """Treat the server at ``uri`` as unreachable for :data:`PROBE_TTL_S` (its TCP port may still accept
    while the server hangs): the next runs go straight to the outbox, then it is probed again, so a server
    that comes back takes the runs again."""
    _reachable[uri] = (time.monotonic(), reason)


def unreachable_reason(uri: str, timeout: float = 2.0, ttl: float = PROBE_TTL_S) -> str | None:
    """Why the store at ``uri`` cannot be used right now (None if it looks usable).

    A server is probed with one short HTTP request (:func:`_probe_server`), so a dead or hung server costs
    seconds, not mlflow's minutes of HTTP retries; a SQLite store needs its folder to be creatable. Results are cached for ``ttl`` seconds;
    ``ttl <= 0`` forgets what this process knew (given up, marked unreachable) and probes again.
    """
    if ttl <= 0:  # a fresh look (``runs sync``): forget that this process gave up on the store
        _unavailable.pop(uri, None)
    elif uri in _unavailable:
        return _unavailable[uri]
    now = time.monotonic()
    cached = _reachable.get(uri)
    if cached and now - cached[0] < ttl:
        return cached[1]
    reason: str | None = None
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create the store folder {db.parent}: {exc.strerror or exc}"
    elif uri.startswith(("http://", "https://")):
        reason = _probe_server(uri, timeout)
    _reachable[uri] = (now, reason)
    return reason


def _probe_server(uri: str, timeout: float) -> str | None:
    """Why the server at ``uri`` does not answer a GET of ``/health`` within ``timeout`` s (None if it
    answers at all: any HTTP status, or a TLS handshake mlflow's own settings may accept). An HTTP request,
    not a TCP connect: a hung server's port still accepts connections."""
    import ssl
    import urllib.error
    import urllib.request

    parsed = urlparse(uri)
    where = f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, ssl.SSLError):
            return None
        return f"cannot connect to {where}: {getattr(cause, 'strerror', None) or cause}"
    return None


def client(uri: str, timeout: float | None = None) -> "MlflowClient":
    """An ``MlflowClient`` for tracking and the model registry on one store; its calls (through
    :func:`with_retry`) wait at most ``timeout`` s for a locked SQLite store (default: the last timeout
    given for ``uri``, else 5 s).

    The first use of a SQLite store in a process prepares it under a file lock (:func:`_prepare_sqlite`).
    mlflow's usage telemetry is off unless the user turned it on (the workbench runs offline); on a server,
    :data:`HTTP_DEFAULTS` bound each call's retries and wait unless the user set them.
    """
    if timeout is not None:
        _timeouts[uri] = timeout
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    # A fresh SQLite store runs ~50 alembic migrations, each logged at INFO, and mlflow announces them.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    db = sqlite_path(uri)
    if db is not None and db not in _prepared:
        _prepare_sqlite(db, uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_prepared: set[Path] = set()
_wal_files: set[str] = set()  # real paths of stores in WAL mode
_timeouts: dict[str | None, float] = {}  # store URI -> lock timeout (s)
_MLFLOW_BUSY = re.compile(r"PRAGMA busy_timeout = \d+;?")


def _bound_busy_timeout(conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                        _executemany: bool) -> tuple[str, Any]:
    """mlflow sets SQLite's busy timeout to 20 s in every session; cap it at the store's lock timeout so
    that a held lock costs one bounded wait."""
    if statement.startswith("PRAGMA busy_timeout"):
        url = conn.engine.url
        wait = _timeouts.get(url.render_as_string(hide_password=False), DEFAULT_TIMEOUT_S)
        statement = _MLFLOW_BUSY.sub(f"PRAGMA busy_timeout = {int(wait * 1000)};", statement)
    return statement, parameters


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """``synchronous=NORMAL`` on connections to a prepared store: in WAL mode a commit then does not wait
    for a disk sync (the database stays consistent; a power cut may lose the last commits, never corrupt)."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        if path and os.path.realpath(path) in _wal_files:
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _prepare_sqlite(db: Path, uri: str) -> None:
    """Create or upgrade the schema and switch to write-ahead logging, one process at a time.

    mlflow migrates a new database on first access; two processes doing that at once corrupt the
    migration ("Online migration expected to match one row"), so it happens under an exclusive lock on
    ``<db>.lock``. WAL (persistent in the file) makes a commit sync one file instead of a rollback journal
    and the database (~2x faster logging) and lets readers proceed while one process writes; with it,
    ``synchronous=NORMAL`` is safe (see :func:`_on_sqlite_connect`).
    """
    import fcntl
    import sqlite3

    from mlflow import MlflowClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_sqlite_connect):
        event.listen(Engine, "connect", _on_sqlite_connect)
        event.listen(Engine, "before_cursor_execute", _bound_busy_timeout, retval=True)

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.with_name(db.name + ".lock"), "a")
    except OSError:
        return  # no store can be made here; the first real call reports it
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            wait = _timeouts.get(uri, DEFAULT_TIMEOUT_S)
            with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=wait)) as con:
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL")  # "locked" if another process writes: skip it
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    _wal_files.add(os.path.realpath(db))
            # The tracking and the registry store each check (and create or upgrade) the schema.
            mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            with_retry(mlflow_client.search_experiments, max_results=1)
            with_retry(mlflow_client.search_registered_models, max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _prepared.add(db)


def ensure_experiment(mlflow_client: "MlflowClient", name: str) -> str:
    """The id of experiment ``name``, created with an explicit artifact location if it does not exist."""
    exp = with_retry(mlflow_client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root(mlflow_client.tracking_uri)
    location = f"{root}/{_slug(name)}" if root else None
    try:
        return with_retry(mlflow_client.create_experiment, name, artifact_location=location)
    except Exception:
        # Another process created it between our lookup and create.
        exp = with_retry(mlflow_client.get_experiment_by_name, name)
        if exp is None:
            raise
        return exp.experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"
