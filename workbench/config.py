"""Paths resolved from the package and the environment, never from the current directory."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout that holds the package (notebooks run with cwd = notebooks/)."""
    return PROJECT_ROOT


def data_dirs() -> list[Path]:
    """Where named datasets are looked up, in order: ``$WORKBENCH_DATA`` (os.pathsep-separated), then ``data/``."""
    dirs = [Path(p).expanduser() for p in os.environ.get("WORKBENCH_DATA", "").split(os.pathsep) if p]
    dirs.append(PROJECT_ROOT / "data")
    return dirs


def download_dir() -> Path:
    """Where ``workbench data fetch`` writes converted collections."""
    return PROJECT_ROOT / "data"


def cache_dir() -> Path:
    """Embedding and ground-truth cache: ``$WORKBENCH_CACHE``, else the user's cache dir."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "workbench"


def output_dir() -> Path:
    """Main-job outputs (executed notebooks, report): ``$WORKBENCH_OUT``, else ``out/``."""
    env = os.environ.get("WORKBENCH_OUT")
    return Path(env).expanduser() if env else PROJECT_ROOT / "out"
