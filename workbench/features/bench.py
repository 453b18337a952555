"""Benchmarks of the point-in-time join: DuckDB against pandas ``merge_asof`` and a brute-force range join.

Every method runs in a fresh Python process that first loads its inputs, then times the join while a
thread samples the process's resident memory every 5 ms; "peak memory" is the peak RSS during the join minus the
RSS just before it. Results are compared through digests of the joined values, so a fast wrong answer shows.

* ``join_benchmark``: entity rows against two views (driver_id; composite (customer_id, region)).
* ``updates_sweep``: the same rows spread over fewer keys (more updates per key): the range join grows with the
  number of candidates per entity row, ASOF and ``merge_asof`` do not.
* ``out_of_core``: one view of many rows in a DuckDB file with ``memory_limit`` set low; the join completes by
  spilling to ``temp_directory``, whose size is sampled during the join.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from workbench.features.store import FeatureStore
from workbench.features.synth import bench_entities, write_bench_view
from workbench.features.view import FeatureView

DRIVER = ["driver:conv_rate", "driver:trips"]
CUSTOMER = ["customer:spend", "customer:visits"]
RESULT = "workbench-bench-result: "


class Sampler:
    """Peak of a sampled quantity (RSS, a folder's size) while a block runs."""

    def __init__(self, read: Callable[[], int], every: float = 0.005):
        self.read, self.every, self.peak = read, every, 0
        self._stop = threading.Event()

    def __enter__(self) -> "Sampler":
        self.start = self.peak = self.read()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.read())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:  # a spill file removed while we looked
                pass
    return total


def digest(frame: pd.DataFrame, cols: list[str]) -> str:
    """Order-sensitive digest of joined values (NULL and NaN alike), to compare methods."""
    h = hashlib.sha256()
    for c in cols:
        v = pd.to_numeric(frame[c], errors="coerce").astype(float).to_numpy()
        h.update(np.where(np.isnan(v), -1.2345e300, np.round(v, 9)).tobytes())
    return h.hexdigest()[:16]


# ---- data --------------------------------------------------------------------------------------------------
def prepare(workdir: Path, n_entities: int, n_features: int, updates_per_key: int, views: int = 2,
            seed: int = 0, **store_kw: Any) -> dict[str, Any]:
    """Parquet inputs and a DuckDB store file holding them; returns paths and the ingest time."""
    workdir.mkdir(parents=True, exist_ok=True)
    per_view = n_features // views
    n_keys = max(1, per_view // updates_per_key)
    paths = {"driver": write_bench_view(workdir / "driver.parquet", per_view, n_keys, seed=seed)}
    if views == 2:
        paths["customer"] = write_bench_view(workdir / "customer.parquet", per_view, n_keys, composite=True,
                                             seed=seed + 1)
    ent = bench_entities(n_entities, n_keys, n_keys if views == 2 else None, seed=seed)
    ent.to_parquet(workdir / "entities.parquet")
    store = workdir / "store.duckdb"
    store.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with FeatureStore(store, **store_kw) as fs:
        fs.apply(FeatureView("driver", ["driver_id"], ["conv_rate", "trips"], created_timestamp_column="created"),
                 paths["driver"])
        if views == 2:
            fs.apply(FeatureView("customer", ["customer_id", "region"], ["spend", "visits"],
                                 created_timestamp_column="created"), paths["customer"])
    return {"workdir": str(workdir), "store": str(store), "entities": str(workdir / "entities.parquet"),
            "driver": str(paths["driver"]), "ingest_seconds": time.perf_counter() - t0,
            "n_keys_per_view": n_keys, "feature_rows_per_view": per_view}


# ---- methods (each runs in a child process) ----------------------------------------------------------------
def _open(spec: dict):
    fs = FeatureStore(spec["store"], threads=spec.get("threads"))
    if spec.get("force_ties"):
        fs.offline.set_state("driver", ties=True)
    return fs


def _duckdb(spec: dict, refs: list[str], by_created: bool = False):
    fs = _open(spec)
    ent = pd.read_parquet(spec["entities"])
    return (lambda: fs.get_historical_features(ent, refs, filter_by_created_timestamp=by_created)), None


def _merge_asof(spec: dict):
    feats = pd.read_parquet(spec["driver"])
    ent = pd.read_parquet(spec["entities"])

    def run() -> pd.DataFrame:
        # ties: latest created, then the later row of the file (= ingested later): a stable sort puts it last
        f = feats.sort_values(["event_timestamp", "created"], kind="stable")
        e = ent[["driver_id", "event_timestamp"]].assign(_row=np.arange(len(ent))).sort_values("event_timestamp",
                                                                                               kind="stable")
        m = pd.merge_asof(e, f[["driver_id", "event_timestamp", "conv_rate", "trips"]], on="event_timestamp",
                          by="driver_id", direction="backward", allow_exact_matches=True)
        return m.sort_values("_row").reset_index(drop=True)

    return run, None


def _range_join(spec: dict):
    """The textbook brute force: every earlier row of the key, ranked by row_number, on a sample of entities."""
    fs = _open(spec)
    ent = pd.read_parquet(spec["entities"]).head(spec["sample"]).reset_index(drop=True)
    ent["_row"] = np.arange(len(ent))
    fs.con.register("sample_entities", ent)
    sql = """
        SELECT e._row, r.conv_rate, r.trips FROM sample_entities e LEFT JOIN (
            SELECT e._row, f.conv_rate, f.trips FROM sample_entities e JOIN fv_driver_v1 f
                ON e.driver_id = f.driver_id AND f.event_timestamp <= e.event_timestamp
            QUALIFY row_number() OVER (PARTITION BY e._row
                ORDER BY f.event_timestamp DESC, f.created DESC NULLS LAST, f._wb_row DESC) = 1
        ) r USING (_row) ORDER BY e._row"""
    reference = fs.get_historical_features(ent.drop(columns="_row"), DRIVER)
    return (lambda: fs.con.execute(sql).df()), digest(reference, ["conv_rate", "trips"])


METHODS = {
    "duckdb_2views": lambda s: _duckdb(s, DRIVER + CUSTOMER),
    "duckdb_1view": lambda s: _duckdb(s, DRIVER),
    "duckdb_1view_created_filter": lambda s: _duckdb(s, DRIVER, by_created=True),
    "merge_asof_1view": _merge_asof,
    "range_join_sample": _range_join,
}


def _child(method: str, spec: dict) -> dict:
    run, check = METHODS[method](spec)
    import gc

    gc.collect()
    with Sampler(rss) as mem:
        t0 = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - t0
    return {"method": method, "seconds": seconds, "peak_mem_mb": (mem.peak - mem.start) / 2**20,
            "rss_before_mb": mem.start / 2**20, "rows": len(out), "digest": digest(out, ["conv_rate", "trips"]),
            "check_digest": check}


def run_method(method: str, spec: dict, timeout: float = 3600) -> dict:
    """One method in a fresh Python process; returns its timing, memory and digest (or the error)."""
    proc = subprocess.run([sys.executable, "-m", "workbench.features.bench", method, json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "error": tail}
    line = [x for x in proc.stdout.splitlines() if x.startswith(RESULT)][-1]
    return json.loads(line[len(RESULT):])


def mark_agreement(results: list[dict]) -> None:
    """``agrees_with_duckdb``: merge_asof against DuckDB's single-view join, the range join against DuckDB's
    join of the same sample (computed in its process)."""
    byname = {r["method"]: r for r in results}
    duck = byname.get("duckdb_1view", {}).get("digest")
    for r in results:
        if r["method"] == "merge_asof_1view" and duck:
            r["agrees_with_duckdb"] = r.get("digest") == duck
        elif r["method"] in ("range_join_sample", "duckdb_1view_ties_path"):
            r["agrees_with_duckdb"] = r.get("digest") == (r.get("check_digest") or duck)


def join_benchmark(n_entities: int = 1_000_000, n_features: int = 10_000_000, updates_per_key: int = 100,
                   sample: int = 10_000, threads: int | None = None, workdir: Path | None = None,
                   methods: tuple[str, ...] = ("duckdb_2views", "duckdb_1view", "merge_asof_1view",
                                               "range_join_sample"), progress: Callable[[str], None] = print) -> dict:
    """Entity rows against ``n_features`` feature rows in two views; see the module docstring."""
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wb-features-bench-"))
    try:
        progress(f"preparing {n_entities:,} entity rows, {n_features:,} feature rows in 2 views ...")
        spec = prepare(tmp, n_entities, n_features, updates_per_key, threads=threads)
        spec.update(threads=threads, sample=sample)
        results = []
        for m in methods:
            progress(f"running {m} ...")
            results.append(run_method(m, spec))
        mark_agreement(results)
        return {"n_entities": n_entities, "n_features": n_features, "updates_per_key": updates_per_key,
                "sample": sample, "threads": threads, "ingest_seconds": spec["ingest_seconds"],
                "results": results}
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)


def updates_sweep(n_entities: int = 200_000, n_features: int = 1_000_000,
                  updates: tuple[int, ...] = (10, 100, 1000, 10_000), sample: int = 20_000,
                  threads: int | None = None, progress: Callable[[str], None] = print) -> dict:
    """One view of ``n_features`` rows over n_features / u keys for each u in ``updates``."""
    rows = []
    for u in updates:
        tmp = Path(tempfile.mkdtemp(prefix="wb-features-sweep-"))
        try:
            progress(f"updates per key {u}: preparing ...")
            spec = prepare(tmp, n_entities, n_features, u, views=1, threads=threads)
            spec.update(threads=threads, sample=sample)
            block = []
            for m in ("duckdb_1view", "duckdb_1view_ties_path", "duckdb_1view_created_filter", "merge_asof_1view",
                      "range_join_sample"):
                progress(f"updates per key {u}: {m} ...")
                s = dict(spec, force_ties=True) if m == "duckdb_1view_ties_path" else spec
                r = run_method("duckdb_1view" if m == "duckdb_1view_ties_path" else m, s)
                r.update(method=m, updates_per_key=u)
                block.append(r)
            mark_agreement(block)
            rows += block
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"n_entities": n_entities, "n_features": n_features, "sample": sample, "threads": threads,
            "results": rows}


def out_of_core(n_rows: int = 50_000_000, n_entities: int = 1_000_000, updates_per_key: int = 100,
                memory_limit: str = "1GB", threads: int | None = None, workdir: Path | None = None,
                progress: Callable[[str], None] = print) -> dict:
    """A join over ``n_rows`` feature rows from a DuckDB file with ``memory_limit``; measures the spill."""
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wb-features-ooc-"))
    spill = tmp / "spill"
    try:
        progress(f"preparing {n_rows:,} feature rows (one view) and {n_entities:,} entity rows ...")
        spec = prepare(tmp, n_entities, n_rows, updates_per_key, views=1, memory_limit=memory_limit,
                       temp_directory=spill, threads=threads)
        ent = pd.read_parquet(spec["entities"])
        progress("joining under the memory limit ...")
        with FeatureStore(spec["store"], memory_limit=memory_limit, temp_directory=spill, threads=threads) as fs:
            limit = fs.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
            with Sampler(lambda: folder_bytes(spill), every=0.05) as disk, Sampler(rss) as mem:
                t0 = time.perf_counter()
                out = fs.get_historical_features(ent, DRIVER)
                seconds = time.perf_counter() - t0
        return {"feature_rows": n_rows, "n_entities": n_entities, "updates_per_key": updates_per_key,
                "memory_limit": limit, "threads": threads, "ingest_seconds": spec["ingest_seconds"],
                "join_seconds": seconds, "peak_spill_bytes": disk.peak, "peak_rss_mb": mem.peak / 2**20,
                "store_file_bytes": os.path.getsize(spec["store"]), "rows": len(out),
                "matched_fraction": float(out["conv_rate"].notna().mean())}
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # the child side of run_method: python -m workbench.features.bench METHOD SPEC_JSON
    print(RESULT + json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))))
