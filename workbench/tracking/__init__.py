"""Experiment tracking and the model registry on an MLflow store.

A :class:`Store` (resolved once from settings by an entry point) is passed to everything that touches
runs. Runners report through the one seam, :mod:`workbench.tracking.sink`; ``log_run`` / ``parent_run``
log runs directly (see their docstrings); ``runs_frame`` / ``best_run`` / ``compare_runs`` query them;
``write_retrieval_bundle`` + ``register_retrieval_model`` turn a run's index into a registered, loadable
pyfunc model. Importing this package is cheap: mlflow (~1.7 s) and pandas are imported by the functions
that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.tracking.experiments import EXPERIMENTS
from workbench.tracking.outbox import sync as sync_outbox
from workbench.tracking.runs import attach_outputs, log_run, parent_run
from workbench.tracking.sink import ChildRun, CollectingSink, NullSink, Sink, TrackingSink
from workbench.tracking.store import Store, choose_store

_LAZY = {
    "runs_frame": "workbench.tracking.query",
    "best_run": "workbench.tracking.query",
    "compare_runs": "workbench.tracking.query",
    "write_retrieval_bundle": "workbench.tracking.bundle",
    "load_bundle": "workbench.tracking.bundle",
    "register_retrieval_model": "workbench.tracking.registry",
    "set_alias": "workbench.tracking.registry",
    "predict_in_fresh_process": "workbench.tracking.registry",
}

__all__ = ["Store", "choose_store", "log_run", "parent_run", "attach_outputs", "sync_outbox", "EXPERIMENTS",
           "Sink", "ChildRun", "TrackingSink", "CollectingSink", "NullSink", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench.tracking' has no attribute {name!r}")
