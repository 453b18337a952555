"""How long logging takes: N configurations of P parameters and M metrics, as one sweep, on a fresh store."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from workbench.tracking.context import cpu_model
from workbench.tracking.runs import log_run, parent_run
from workbench.tracking.store import (client, ensure_experiment, sqlite_path, store_dir, tracking_uri,
                                      unreachable_reason, with_retry)

EXPERIMENT = "tracking-bench"


@contextlib.contextmanager
def _store(uri: str) -> Iterator[None]:
    """Make ``uri`` the tracking store for the block (log_run reads ``MLFLOW_TRACKING_URI``)."""
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def logging_benchmark(configs: int = 100, n_params: int = 10, n_metrics: int = 10,
                      uri: str | None = None) -> dict[str, Any]:
    """Log ``configs`` child runs (``n_params`` params, ``n_metrics`` metrics each) under one parent run.

    With ``uri=None`` a fresh SQLite store is made in a temp folder beside the configured one (same disk)
    and deleted afterwards; creating its schema is timed apart (``setup_seconds``) since it happens once
    per store. ``seconds`` covers the whole sweep: parent, children, and their context tags.
    """
    tmp: Path | None = None
    if uri is None:
        db = sqlite_path(tracking_uri())
        base = db.parent if db is not None else store_dir()
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
    try:
        with _store(uri):
            start = time.perf_counter()
            c = client()
            if unreachable_reason(uri) is None:  # else the sweep below goes to the outbox, as any command's would
                ensure_experiment(c, EXPERIMENT)
            setup = time.perf_counter() - start
            start = time.perf_counter()
            with parent_run(EXPERIMENT, f"bench {configs}x{n_params}x{n_metrics}",
                            params={"configs": configs}, command="workbench tracking-bench") as parent_id:
                ids = [log_run(EXPERIMENT, f"config-{i}", params={f"param_{j}": i * j for j in range(n_params)},
                               metrics={f"metric_{j}": (i + 1) / (j + 1) for j in range(n_metrics)},
                               command="workbench tracking-bench")
                       for i in range(configs)]
            seconds = time.perf_counter() - start
            stored = 0
            if parent_id is not None:
                runs = with_retry(c.search_runs, [c.get_experiment_by_name(EXPERIMENT).experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=configs + 10)
                stored = len(runs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"configs": configs, "params_per_run": n_params, "metrics_per_run": n_metrics,
            "seconds": round(seconds, 3), "runs_per_second": round(configs / seconds, 1),
            "setup_seconds": round(setup, 3), "runs_in_store": stored,
            "runs_queued": sum(i is None for i in ids), "store": "fresh temporary SQLite" if tmp else uri,
            "cpu": cpu_model(), "cores": os.cpu_count(),
            # the machine may be shared: its load during the measurement says how much the figure is worth
            "load_average_1min": round(os.getloadavg()[0], 2)}
