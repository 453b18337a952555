"""Experiment tracking and the model registry on a local MLflow store.

``log_run`` / ``parent_run`` log measurements (see their docstrings); ``runs_frame`` / ``best_run`` /
``compare_runs`` query them; ``write_retrieval_bundle`` + ``register_retrieval_model`` turn a run's index
into a registered, loadable pyfunc model. Importing this package is cheap: mlflow (~1.7 s) and pandas are
imported by the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.tracking.outbox import sync as sync_outbox
from workbench.tracking.runs import TrackingError, TrackingUnavailableWarning, log_run, parent_run
from workbench.tracking.store import EXPERIMENTS, artifact_root, outbox_dir, tracking_uri

_LAZY = {
    "runs_frame": "workbench.tracking.query",
    "best_run": "workbench.tracking.query",
    "compare_runs": "workbench.tracking.query",
    "write_retrieval_bundle": "workbench.tracking.bundle",
    "load_bundle": "workbench.tracking.bundle",
    "register_retrieval_model": "workbench.tracking.registry",
    "set_alias": "workbench.tracking.registry",
}

__all__ = ["log_run", "parent_run", "sync_outbox", "tracking_uri", "artifact_root", "outbox_dir", "EXPERIMENTS",
           "TrackingError", "TrackingUnavailableWarning", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench.tracking' has no attribute {name!r}")
