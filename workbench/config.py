"""Where the workbench reads and writes: the workspace, the data search path, the cache, the outputs.

The *workspace* holds a user's outputs (``out/``), tracking store (``.mlflow/``) and downloads (``data/``):
``$WORKBENCH_HOME`` if set, else the nearest folder at or above the current directory that holds the
workbench checkout (a ``pyproject.toml`` naming the project ``workbench``) or a ``.workbench`` marker, else
the current directory. So a command run anywhere inside the checkout (notebooks execute with cwd =
``notebooks/``) uses the checkout's folders, and an installed workbench never writes into
``site-packages``. ``PROJECT_ROOT`` is the package's own checkout (its notebooks, its git commit).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from workbench.errors import OutputError
from workbench.io import writable_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".workbench"
_PROJECT_NAME = re.compile(r'^\s*name\s*=\s*["\']workbench["\']', re.M)


def project_root() -> Path:
    """The checkout that holds the package (its notebooks and git state)."""
    return PROJECT_ROOT


def _is_workspace(folder: Path) -> bool:
    if (folder / MARKER).exists():
        return True
    try:
        return bool(_PROJECT_NAME.search((folder / "pyproject.toml").read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def workspace() -> Path:
    """The workspace folder (see the module docstring)."""
    env = os.environ.get("WORKBENCH_HOME")
    if env:
        home = Path(env).expanduser().absolute()
        if home.exists() and not home.is_dir():
            raise OutputError(f"WORKBENCH_HOME={env} is a regular file, not a folder")
        return home
    cwd = Path.cwd()
    return next((d for d in (cwd, *cwd.parents) if _is_workspace(d)), cwd)


def data_dirs() -> list[Path]:
    """Where named datasets are looked up, in order: ``$WORKBENCH_DATA`` (os.pathsep-separated), then the
    workspace's ``data/``."""
    dirs = [Path(p).expanduser() for p in os.environ.get("WORKBENCH_DATA", "").split(os.pathsep) if p]
    dirs.append(download_dir())
    return dirs


def download_dir() -> Path:
    """Where ``workbench data fetch`` writes converted collections: the workspace's ``data/``."""
    return workspace() / "data"


def cache_dir() -> Path:
    """Embedding and ground-truth cache: ``$WORKBENCH_CACHE``, else the user's cache dir; created and checked
    writable (a setting that names a file is an :class:`OutputError`, not a failure deep in a cache write)."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return writable_dir(env, "cache folder (WORKBENCH_CACHE)")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return writable_dir(Path(base) / "workbench", "cache folder")


def output_dir() -> Path:
    """Main-job outputs (executed notebooks, report): ``$WORKBENCH_OUT``, else the workspace's ``out/``."""
    env = os.environ.get("WORKBENCH_OUT")
    return Path(env).expanduser() if env else workspace() / "out"
