"""The point-in-time join on three engines over the same data: DuckDB (ASOF), pandas ``merge_asof``, Spark.

One view (``bench.prepare``: keys uniform, ~``updates_per_key`` rows per key, a created time) and one entity
table. Each engine runs in a fresh Python process that loads its inputs, then times the join; Spark's is timed
twice: ``cold_seconds`` includes exporting the view to Parquet and the JVM's first compilation, ``seconds``
is the second, warm call (what a session that has started pays per join). Each child writes its frame to
Parquet and the parent compares the frames: DuckDB's and Spark's must be equal as frames (values, dtypes,
index), ``merge_asof``'s in its feature values. Spark's formatted physical plan is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.bench import DRIVER, RESULT, _merge_asof, prepare
from workbench.features.store import FeatureStore
from workbench.plotting import pyplot, save_png

ENGINES = ("duckdb", "merge_asof", "spark")
FEATURES = ["conv_rate", "trips"]


def _cores(engine: str, spec: dict) -> int | None:
    """Cores the engine may use: merge_asof one; DuckDB its threads; Spark local[N] N (a cluster: unknown)."""
    if engine == "merge_asof":
        return 1
    if engine == "duckdb":
        return spec.get("threads") or os.cpu_count()
    master = spec["spark_master"]
    if master.startswith("local[") and master[6:-1].isdigit():
        return int(master[6:-1])
    return os.cpu_count() if master in ("local", "local[*]") else None


def _child(engine: str, spec: dict) -> dict:
    ent = pd.read_parquet(spec["entities"])
    row: dict[str, Any] = {"method": engine}
    if engine == "merge_asof":
        run, _ = _merge_asof(spec)
        t0 = time.perf_counter()
        out = run()
        row["seconds"] = time.perf_counter() - t0
        out = out[FEATURES]
    else:
        t0 = time.perf_counter()
        fs = FeatureStore(spec["store"], threads=spec.get("threads"), engine=engine,
                          **({"spark_master": spec["spark_master"]} if engine == "spark" else {}))
        if engine == "spark":
            row["spark_version"] = fs.spark.spark.version  # starts the session: the timed calls exclude it
            row["session_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            fs.get_historical_features(ent, DRIVER)
            row["cold_seconds"] = time.perf_counter() - t0
            plans: list[str] = []
            t0 = time.perf_counter()
            out = fs.spark.historical_features(ent, DRIVER, explain=plans)
            row["seconds"] = time.perf_counter() - t0
            row["plan"] = plans[0]
        else:
            t0 = time.perf_counter()
            out = fs.get_historical_features(ent, DRIVER)
            row["seconds"] = time.perf_counter() - t0
        fs.close()
    out.to_parquet(Path(spec["workdir"]) / f"{engine}.parquet")
    row["rows"] = len(out)
    return row


def run_engine(engine: str, spec: dict, timeout: float = 3600) -> dict:
    """One engine in a fresh Python process; its row (or the error's last line)."""
    proc = subprocess.run([sys.executable, "-m", "workbench.features.engines_bench", engine, json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"method": engine, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    line = [x for x in proc.stdout.splitlines() if x.startswith(RESULT)][-1]
    return json.loads(line[len(RESULT):])


def compare(reference: pd.DataFrame, other: pd.DataFrame, whole: bool) -> tuple[bool, int]:
    """(identical, rows whose feature values differ): the whole frame when ``whole``, else the values."""
    a = reference[FEATURES].to_numpy(dtype=float, na_value=np.nan)
    b = other[FEATURES].to_numpy(dtype=float, na_value=np.nan)
    differ = int((~((a == b) | (np.isnan(a) & np.isnan(b)))).any(axis=1).sum()) if a.shape == b.shape else len(a)
    if not whole:
        return differ == 0, differ
    try:
        pd.testing.assert_frame_equal(reference, other)
        return True, differ
    except AssertionError:
        return False, differ


def engines_benchmark(n_entities: int = 200_000, n_features: int = 1_000_000, updates_per_key: int = 100,
                      engines: tuple[str, ...] = ENGINES, spark_master: str | None = None, threads: int | None = None,
                      workdir: Path | None = None, progress: Callable[[str], None] = print) -> dict:
    """The same join on each of ``engines``; see the module docstring."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise FeatureStoreError(f"unknown engine(s) {unknown} (known: {', '.join(ENGINES)})")
    from workbench.features.spark_engine import resolve_master  # pyspark only when this runs

    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wb-features-engines-"))
    load_start = list(os.getloadavg())
    try:
        progress(f"preparing {n_entities:,} entity rows, {n_features:,} feature rows in one view ...")
        spec = prepare(tmp, n_entities, n_features, updates_per_key, views=1, threads=threads)
        spec.update(threads=threads, spark_master=resolve_master(spark_master))
        results = []
        for e in engines:
            progress(f"running {e} ...")
            row = run_engine(e, spec)
            if "seconds" in row:
                row["cores"] = _cores(e, spec)
                row["rows_per_s"] = n_entities / row["seconds"]
                row["input_rows_per_s"] = (n_entities + n_features) / row["seconds"]
                if row["cores"]:
                    row["input_rows_per_s_per_core"] = row["input_rows_per_s"] / row["cores"]
            results.append(row)
        frames = {r["method"]: pd.read_parquet(tmp / f"{r['method']}.parquet") for r in results if "error" not in r}
        reference = frames.get("duckdb")
        for r in results:
            if reference is not None and r["method"] in frames and r["method"] != "duckdb":
                r["identical"], r["differing_rows"] = compare(reference, frames[r["method"]],
                                                              whole=r["method"] == "spark")
        plan = next((r.pop("plan") for r in results if "plan" in r), None)
        return {"n_entities": n_entities, "n_features": n_features, "updates_per_key": updates_per_key,
                "spark_master": spec["spark_master"], "threads": threads, "cpu_count": os.cpu_count(),
                "load_average_start": load_start,
                "load_average": list(os.getloadavg()), "ingest_seconds": spec["ingest_seconds"],
                "results": results, "spark_plan": plan}
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)


def plot_engines(payload: dict, path: str | Path) -> Path:
    """Warm join time per engine (bars, log scale) labelled with entity rows/s."""
    plt = pyplot()
    rows = [r for r in payload["results"] if "seconds" in r]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    names = [r["method"] + ("" if r.get("identical", True) else " (DIFFERS)") for r in rows]
    ax.barh(names, [r["seconds"] for r in rows], color="#4c72b0")
    for i, r in enumerate(rows):
        ax.text(r["seconds"], i, f"  {r['seconds']:.2f} s, {r['rows_per_s']:,.0f} rows/s", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.set_xlim(min(r["seconds"] for r in rows) / 2, max(r["seconds"] for r in rows) * 30)  # room for the labels
    ax.set_xlabel("join wall time, s (log)")
    load = payload["load_average"][0]
    ax.set_title(f"Point-in-time join: {payload['n_entities']:,} entity x {payload['n_features']:,} feature rows, "
                 f"~{payload['updates_per_key']} updates/key\nSpark {payload['spark_master']} (warm), "
                 f"{payload['cpu_count']} cores, load {load:.1f}", fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    return save_png(fig, path)


if __name__ == "__main__":  # the child side of run_engine: python -m workbench.features.engines_bench ENGINE SPEC
    print(RESULT + json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))))
