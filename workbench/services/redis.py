"""The Redis the workbench talks to: Debian's ``redis-server`` started by the project on a Unix socket in a
temporary directory (no TCP port), or the user's own server (``WORKBENCH_REDIS_URI``, e.g.
``redis://localhost:6379/0`` or ``unix:///run/redis.sock``).

Lifetime: whoever starts a :class:`RedisServer` stops it (``stop()``, the context manager, or at exit for
the process-wide one of :func:`connect`). Each server owns a fresh folder ``workbench-redis-<random>`` under
the system temp dir holding its socket, its ``pid`` file and (``persistent=True``) its append-only file.
A run killed before it could stop its server leaves that folder behind: every start sweeps folders whose
``pid`` file names a process that is gone, and ends a server whose owner (``owner`` file) is gone.
A user's server is never started, stopped or swept.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from workbench.errors import DatabaseError

REDIS_URI_ENV = "WORKBENCH_REDIS_URI"
CONNECT_TIMEOUT_S = 5.0
_PREFIX = "workbench-redis-"


def _one_line(exc: BaseException) -> str:
    return "; ".join(l.strip() for l in str(exc).strip().splitlines() if l.strip()) or type(exc).__name__


def binary() -> str:
    """The ``redis-server`` executable, or a DatabaseError that says how to get one."""
    found = shutil.which("redis-server")
    if found is None:
        raise DatabaseError(f"redis-server is not installed (not on PATH): run 'apt-get install redis-server' "
                            f"(.ci/run and 'make redis-server' do it), or set {REDIS_URI_ENV} to your own server")
    return found


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove the folders of servers left by killed runs (their owner is gone); returns what was removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(_PREFIX + "*"):
        owner, pid = _read_pid(folder / "owner"), _read_pid(folder / "pid")
        if owner is None or _alive(owner):
            continue            # a live run's server (or one just being created)
        if _alive(pid):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.name().startswith("redis-server"):
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _ping(client: redis.Redis, where: str) -> str:
    """The server's version; a DatabaseError naming ``where`` when it does not answer."""
    try:
        client.ping()
        return str(client.info("server")["redis_version"])
    except (redis.RedisError, OSError) as exc:
        raise DatabaseError(f"cannot reach Redis at {where}: {_one_line(exc)}") from None


@dataclass
class RedisServer:
    """A ``redis-server`` of this process on a Unix socket. ``persistent`` writes an append-only file
    (``appendfsync always``) in the folder, so that a server killed and restarted with :meth:`restart`
    comes back with every acknowledged write; otherwise nothing touches the disk."""

    persistent: bool = False
    folder: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        assert self.folder is not None
        return self.folder / "redis.sock"

    @property
    def uri(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> "RedisServer":
        """Start the server (a fresh folder) and wait until it answers; returns self."""
        exe = binary()
        sweep_stale()
        self.folder = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (self.folder / "owner").write_text(f"{os.getpid()}\n")
        self._launch(exe)
        return self

    def _launch(self, exe: str) -> None:
        assert self.folder is not None
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        args = [exe, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.folder), "--save", "", *persist, "--daemonize", "no",
                "--logfile", str(self.folder / "log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        (self.folder / "pid").write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DatabaseError(f"redis-server exited with code {self.process.returncode} at start: "
                                    f"{self._log_tail()} (log: {self.folder / 'log'})")
            if self.socket.exists():
                with contextlib.suppress(redis.RedisError, OSError), self.client() as c:
                    if c.ping():
                        return
            time.sleep(0.02)
        self.kill()
        raise DatabaseError(f"redis-server in {self.folder} did not answer within 10 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = [l for l in (self.folder / "log").read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "empty log"

    def client(self, **kwargs) -> redis.Redis:
        """A new client of this server (``decode_responses`` off: values are bytes)."""
        return redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=CONNECT_TIMEOUT_S, **kwargs)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (the folder stays, so :meth:`restart` can recover the append-only file)."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        """Start again in the same folder (after :meth:`kill`): a persistent server reloads its data."""
        assert self.folder is not None, "restart() of a server never started"
        self.kill()
        self.socket.unlink(missing_ok=True)
        self._launch(binary())

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.running:
            with contextlib.suppress(redis.RedisError, OSError), self.client() as c:
                c.shutdown(nosave=True)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def configured() -> bool:
    """Whether the user named their own server (``WORKBENCH_REDIS_URI``)."""
    return bool(os.environ.get(REDIS_URI_ENV))


_shared: RedisServer | None = None


def connect(uri: str | None = None) -> redis.Redis:
    """A checked client: of ``uri``, else of ``WORKBENCH_REDIS_URI``, else of a server this process starts on
    first use (restarted if it died) and stops at exit. Unreachable -> one-line DatabaseError."""
    global _shared
    uri = uri or os.environ.get(REDIS_URI_ENV)
    if uri:
        try:
            client = redis.Redis.from_url(uri, socket_connect_timeout=CONNECT_TIMEOUT_S)
        except ValueError as exc:
            raise DatabaseError(f"{REDIS_URI_ENV}={uri} is not a Redis URI ({exc})") from None
        _ping(client, f"{REDIS_URI_ENV}={uri}" if uri == os.environ.get(REDIS_URI_ENV) else uri)
        return client
    if _shared is None or not _shared.running:
        if _shared is None:
            atexit.register(lambda: _shared is not None and _shared.stop())
        else:
            _shared.stop()
        _shared = RedisServer().start()
    client = _shared.client()
    _ping(client, _shared.uri)
    return client


def server_version(client: redis.Redis) -> str:
    """``redis_version`` of the server behind ``client``."""
    return _ping(client, repr(client))
