"""Configurations measured side by side (``workbench tune --compare``): each library's default and the
tuner's recommendation, every one swept along its ladder to the recall target, then timed in interleaved
rounds (round r: one harness measurement of every contending point, the order rotated each round), so
that machine drift and the load of other processes hit all of them alike, as ``ann-overhead`` alternates.

Per point the figure is the median QPS over the rounds, with the lowest and highest round beside it; per
configuration the best median among its points that reach the target."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tqdm.auto import tqdm

from workbench.bench.harness import BenchSet, point_label
from workbench.bench.tune import Built, TuneSettings, build, measure, recall_at, sweep_to_target
from workbench.bench.tune_space import Candidate


@dataclass
class Contender:
    """One configuration of the comparison: its build, the points that reach the target (one per fixed
    query setting) and their rows of every round."""

    name: str
    built: Built
    points: list[dict[str, Any]]
    sweep_s: float
    rounds: dict[str, list[dict[str, Any]]]


def compare(data: BenchSet, candidates: Mapping[str, Candidate], settings: TuneSettings, rounds: int = 7,
            on_point: Callable[[dict[str, Any]], None] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Build every candidate, find its lowest-effort points at ``settings.recall``, then time all those points
    in ``rounds`` interleaved rounds. Returns one summary per candidate (in the given order):
    ``name, spec, point, recall, qps`` (median), ``qps_lo``/``qps_hi`` (extreme rounds), ``build_s``,
    ``size_mb``, ``sweep_s`` (build + sweep to the target), ``reached`` (False: no point reached it)."""
    contenders: list[Contender] = []
    for name, cand in tqdm(candidates.items(), desc="compare: build and sweep", unit="config", disable=not progress):
        t0 = time.perf_counter()
        built = build(data, cand, settings.build_threads)
        found, _ = sweep_to_target(lambda qp: recall_at(data, built, qp, settings), cand, settings.recall)
        points = [{"query": f["query"], "point": point_label(built.spec, f["query"])} for f in found]
        contenders.append(Contender(name, built, points, time.perf_counter() - t0, {p["point"]: [] for p in points}))
    work = [(c, p) for c in contenders for p in c.points]
    with tqdm(total=rounds * len(work), desc="compare: interleaved rounds", unit="point",
              disable=not progress) as bar:
        for r in range(rounds):
            shift = r % max(1, len(work))
            for c, p in work[shift:] + work[:shift]:
                row = measure(data, c.built, p["query"], settings, runs=1)
                row["round"] = r
                c.rounds[p["point"]].append(row)
                if on_point is not None:
                    on_point(row)
                bar.update()
    return [_summary(c, settings.recall) for c in contenders]


def _summary(c: Contender, target: float) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "spec": c.built.candidate.spec, "build_s": c.built.build_s,
                           "size_mb": c.built.size_bytes / 2**20, "sweep_s": c.sweep_s, "reached": False,
                           "point": None, "recall": None, "qps": None, "qps_lo": None, "qps_hi": None, "points": []}
    for point, rows in c.rounds.items():
        qps = [r["qps"] for r in rows]
        entry = {"point": point, "recall": min(r["recall"] for r in rows), "qps": statistics.median(qps),
                 "qps_lo": min(qps), "qps_hi": max(qps), "rounds": len(qps)}
        out["points"].append(entry)
        if entry["recall"] >= target and (out["qps"] is None or entry["qps"] > out["qps"]):
            out.update({k: entry[k] for k in ("point", "recall", "qps", "qps_lo", "qps_hi")}, reached=True)
    return out
