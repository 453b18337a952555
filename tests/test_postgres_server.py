"""The embedded PostgreSQL, for real: start, status, reuse by another process, stop at exit, `pg start`
keeping it up until `pg stop`, a killed run's server reused and its tables dropped, a killed server
restarted; one-line errors for a data directory that is not writable, a socket in use, an unreachable
WORKBENCH_PG_URI, and a database where pgvector is missing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from pg_support import env, pg_dir_fixture, pg_server_fixture, workbench_tables  # noqa: F401  (fixtures)

from workbench.cli import main
from workbench.config import project_root
from workbench.errors import DatabaseError
from workbench.services import postgres


def run_python(code: str, cache: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with WORKBENCH_CACHE=cache (its at-exit handlers run as usual)."""
    child_env = {**os.environ, "WORKBENCH_CACHE": str(cache)}
    child_env.pop("WORKBENCH_PG_URI", None)
    return subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True,
                          cwd=project_root(), timeout=120, check=False)


def kill_and_wait(proc: psutil.Process) -> None:
    """SIGKILL is asynchronous: wait until the process is a zombie or gone."""
    proc.kill()
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)


def test_pg_start_stays_up_until_pg_stop(pg_dir, capsys):
    with env(WORKBENCH_CACHE=str(pg_dir), WORKBENCH_PG_URI=None):
        assert main(["pg", "status"]) == 0
        assert "not running" in capsys.readouterr().out
        started = run_python("from workbench.cli import main; main(['pg', 'start', '--json'])", pg_dir)
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["how"] == "started"
        info = postgres.server_status()                  # the starting process has ended; the server has not
        assert info is not None and info.persistent and info.server_version.startswith("18")
        assert main(["pg", "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        with psycopg.connect(status["uri"]) as conn:     # the printed URI is what psql takes
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == \
                status["pgvector_version"]
        reused = run_python("from workbench.services.postgres import ensure_server; print(ensure_server().how)",
                            pg_dir)
        assert reused.stdout.strip() == "reused"
        assert postgres.server_status() is not None      # kept: `pg start` asked for it
        assert main(["pg", "stop"]) == 0 and "stopped" in capsys.readouterr().out
        assert postgres.server_status() is None
        assert main(["pg", "stop"]) == 0 and "was not running" in capsys.readouterr().out


def test_killed_run_is_reused_then_the_last_process_stops_it(pg_dir):
    killed = run_python(
        "import os, signal\n"
        "from workbench.services.postgres import connect, table_name\n"
        "conn = connect(); conn.execute(f'CREATE TABLE {table_name(\"x\")} (a int)')\n"
        "os.kill(os.getpid(), signal.SIGKILL)", pg_dir)
    assert killed.returncode == -signal.SIGKILL
    data = pg_dir / "postgres" / "data"
    dead = json.loads((data / ".handle_pids.json").read_text())
    assert len(dead) == 1 and not os.path.exists(f"/proc/{dead[0]}")
    with env(WORKBENCH_CACHE=str(pg_dir), WORKBENCH_PG_URI=None):
        left = postgres.server_status()
        assert left is not None                          # the killed run left its server running
        after = run_python(
            "import json\n"
            "from workbench.services.postgres import ensure_server, connect\n"
            "info = ensure_server()\n"
            "sql = \"SELECT tablename FROM pg_tables WHERE tablename LIKE 'wb%'\"\n"
            "tables = [r[0] for r in connect().execute(sql)]\n"
            "print(json.dumps({'how': info.how, 'pid': info.pid, 'tables': tables}))", pg_dir)
        out = json.loads(after.stdout)
        assert out == {"how": "reused", "pid": left.pid, "tables": []}   # its orphan table was dropped
        assert postgres.server_status() is None          # the dead PID did not keep the server alive


def test_killed_server_is_restarted(pg_dir):
    data = pg_dir / "postgres" / "data"
    first = postgres.ensure_server(data=data)
    try:
        kill_and_wait(psutil.Process(first.pid))
        again = postgres.ensure_server(data=data)
        assert again.how == "restarted" and again.pid != first.pid
        with psycopg.connect(again.uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        assert postgres.stop_server(data)


def test_data_directory_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:                                # root writes through permission bits
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True, check=False).returncode != 0:
            pytest.skip("chattr +i is not available here")
    else:
        locked.chmod(0o500)
    try:
        with pytest.raises(DatabaseError, match=r"data directory .*locked/postgres/data is not writable") as err:
            postgres.ensure_server(data=locked / "postgres" / "data")
        assert "\n" not in str(err.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        else:
            locked.chmod(0o700)


def test_socket_in_use(pg_dir):
    data = pg_dir / "postgres" / "data"
    data.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatter:
        squatter.bind(str(data / ".s.PGSQL.5432"))
        squatter.listen()
        with pytest.raises(DatabaseError, match=r"socket .*\.s\.PGSQL\.5432 is in use") as err:
            postgres.ensure_server(data=data)
    assert "\n" not in str(err.value)


def test_unreachable_uri_is_one_line(tmp_path, capsys):
    uri = f"postgresql://nobody@/nodb?host={tmp_path / 'nowhere'}"
    with env(WORKBENCH_PG_URI=uri), \
            pytest.raises(DatabaseError, match=r"cannot connect to WORKBENCH_PG_URI=postgresql://nobody@"):
        postgres.ensure_server()
    with env(WORKBENCH_PG_URI=uri):
        assert main(["pg", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to WORKBENCH_PG_URI") and err.count("\n") == 1
    assert postgres.redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_uri_server_missing_the_extension_says_what_to_run(pg_server):
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        conn.execute("CREATE ROLE wb_plain LOGIN")
        conn.execute("CREATE DATABASE wb_noext")
    host = pg_server.uri.split("host=")[1]
    plain = f"postgresql://wb_plain@/wb_noext?host={host}"
    with env(WORKBENCH_PG_URI=plain), \
            pytest.raises(DatabaseError, match=r"not created in database wb_noext, and role wb_plain may not "
                                               r"create it .*CREATE EXTENSION vector;' in database wb_noext"):
        postgres.ensure_server()
    superuser = f"postgresql://postgres@/wb_noext?host={host}"
    with env(WORKBENCH_PG_URI=superuser):
        info = postgres.ensure_server()                  # a superuser creates it, and the version is reported
        assert (info.source, info.how, info.pgvector_version) == ("WORKBENCH_PG_URI", "external",
                                                                  pg_server.pgvector_version)
        with pytest.raises(DatabaseError, match="does not stop a server it did not start"):
            postgres.stop_server()
    assert workbench_tables(pg_server.uri) == []
