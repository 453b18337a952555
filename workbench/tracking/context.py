"""Tags every run records: code version, library versions, hardware, threads, and what produced it.

MLflow records no git commit under papermill/nbclient, so the commit and dirty flag are set here explicitly.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from workbench.config import project_root

# distribution name -> tag suffix
KEY_LIBRARIES = {
    "numpy": "numpy",
    "faiss-cpu": "faiss",
    "hnswlib": "hnswlib",
    "torch": "torch",
    "sentence-transformers": "sentence-transformers",
    "bm25s": "bm25s",
    "duckdb": "duckdb",
    "mlflow": "mlflow",
    "workbench": "workbench",
}


@functools.lru_cache(maxsize=1)
def _static_tags() -> dict[str, str]:
    """The parts that cannot change within a process (git is read once, not once per run)."""
    tags = {
        "workbench.cpu": cpu_model(),
        "workbench.cores": str(os.cpu_count() or 0),
        "workbench.python": platform.python_version(),
        "workbench.host": socket.gethostname(),
    }
    for dist, short in KEY_LIBRARIES.items():
        try:
            tags[f"workbench.version.{short}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            tags[f"workbench.version.{short}"] = "not installed"
    commit, dirty = git_state(project_root())
    tags["mlflow.source.git.commit"] = commit
    tags["workbench.git.commit"] = commit
    tags["workbench.git.dirty"] = dirty
    return tags


def run_tags(command: str | None = None) -> dict[str, str]:
    """Tags for one run: static context plus thread count and the notebook or command that produced it."""
    tags = dict(_static_tags())
    source = command or default_command()
    tags["workbench.command"] = source
    tags["mlflow.source.name"] = source
    tags["mlflow.source.type"] = "NOTEBOOK" if source.endswith(".ipynb") or _in_kernel() else "LOCAL"
    tags["workbench.threads"] = str(thread_count())
    tags["workbench.pid"] = str(os.getpid())  # with workbench.host: is the process that wrote it alive?
    return tags


def git_state(root: Path) -> tuple[str, str]:
    """``(commit, dirty)`` of the checkout at ``root``; ``("unknown", "unknown")`` outside git or before a commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    try:
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        dirty = "unknown"
    return commit, dirty


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def thread_count() -> int:
    """Threads the numeric libraries use: faiss's OpenMP setting if faiss is loaded, else OMP_NUM_THREADS/cores."""
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        return int(faiss.omp_get_max_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() else (os.cpu_count() or 1)


def default_command() -> str:
    """``workbench <subcommand ...>`` for the CLI, ``notebook`` inside a kernel, else the script name."""
    if _in_kernel():
        return "notebook"
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:]])[:500]


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules
