"""The tuner (``workbench tune``): the fastest configuration at a recall target, searched across families
with Optuna (Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019).

Search. A TPE sampler (Bergstra et al., NeurIPS 2011; Watanabe, "Tree-structured Parzen Estimator",
2023) over the conditional space of :mod:`workbench.bench.tune_space` (``multivariate`` and ``group``, so
each family's parameters are modelled jointly and only where the family was chosen). One trial = one
build configuration: built once, then its query parameter is swept on the built index along an ascending
ladder of effort. More effort only costs QPS once the target is reached, so a sweep checks the
maximum-effort point first (a build that cannot reach the target there is PRUNED), then bisects for the
lowest effort that reaches it. Recall needs no clock: the search runs on recall from one batch call, and
the harness times only the point found (and the step below it, for the frontier). The trial's value is
the QPS (one query at a time) of that point.

Constrained, not multi-objective: the question asked is "the fastest configuration within my memory and
build-time limits", which has one answer. Memory (the serialized index size) and build time are Optuna
constraints (``Trial.set_constraint``, Optuna 5; ``value - limit <= 0`` is feasible); TPE then models feasibility
(Watanabe & Hutter, "c-TPE", IJCAI 2023) instead of spreading the budget over a Pareto front of trade-offs
nobody asked for. A build over a limit is pruned before its sweep. The recall/QPS frontier of every
measured point is reported beside the recommendation all the same.

Measurement is the harness's (``measure_point``: ann-benchmarks' protocol); this module takes callbacks
and never imports tracking. :func:`compare` measures several configurations side by side: their passes
are interleaved round by round, so machine drift hits every configuration alike.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna
import pandas as pd
from tqdm.auto import tqdm

from workbench.bench.harness import BenchSet, SweepSettings, base_row, measure_point
from workbench.bench.tune_space import STARTS, Candidate, check_families, suggest
from workbench.errors import IndexSpecError, TuneError
from workbench.index.base import VectorIndex
from workbench.index.spec import IndexSpec, parse_spec
from workbench.vectors.recall import recall_ties

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)")
#: a run of this many trials in a row that only re-suggest measured builds: the space is exhausted
MAX_REPEATS = 25


def parse_budget(text: str | float | int) -> float:
    """``"10m"``, ``"90s"``, ``"1h30m"``, ``"600"`` (seconds) -> seconds; 0 runs no new trial."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        parts = _DURATION.findall(s)
        if not s or "".join(_DURATION.sub("#", s).split("#")).strip():
            raise TuneError(f"budget {text!r} is not a duration; use e.g. 10m, 90s, 1h30m or 600 (seconds)")
        seconds = sum(float(v) * _UNITS[u] for v, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise TuneError(f"budget {text!r} must be a finite duration of 0 seconds or more")
    return seconds


@dataclass(frozen=True)
class TuneSettings:
    """What the tuner optimises and how it measures (``build_threads`` None: all cores)."""

    recall: float = 0.95
    memory_mb: float | None = None
    build_s: float | None = None
    budget_s: float = 600.0
    families: tuple[str, ...] | str | None = None
    k: int = 10
    threads: int = 1
    build_threads: int | None = None
    runs: int = 3
    warmup: int = 200
    point_budget_s: float = 1.0
    seed: int = 0
    max_trials: int | None = None

    def checked(self) -> "TuneSettings":
        """These settings validated (``TuneError`` names the bad value), families resolved."""
        if isinstance(self.recall, bool) or not isinstance(self.recall, (int, float)) or not 0 < self.recall <= 1:
            raise TuneError(f"recall target {self.recall!r} must lie in (0, 1]")
        for name in ("memory_mb", "build_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise TuneError(f"{name.replace('_', '-')} limit {v!r} must be a positive number")
        for name in ("k", "threads", "runs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TuneError(f"{name}={v!r} must be a positive integer")
        budget = parse_budget(self.budget_s)
        return TuneSettings(**{**self.__dict__, "budget_s": budget, "families": check_families(self.families),
                               "build_threads": self.build_threads or os.cpu_count() or 1})

    def study_name(self, data: BenchSet) -> str:
        """One study per question: the data, target, limits, k, threads and families (a rerun with the same
        question continues it; another question starts its own study in the same storage)."""
        limits = f"mem{self.memory_mb or 'any'}-build{self.build_s or 'any'}"
        return (f"tune-{data.digest[:12]}-recall{self.recall}-{limits}-k{self.k}-t{self.threads}-"
                + "+".join(sorted(self.families)))


def point_row(data: BenchSet, spec: IndexSpec, index: VectorIndex, qp: dict[str, Any],
              settings: TuneSettings) -> dict[str, Any]:
    """The identifying columns of a measured point: the harness's (``harness.base_row``) and its query parameters."""
    sweep = SweepSettings(k=settings.k, threads=settings.threads, batch_threads=settings.build_threads)
    return {**base_row(data, spec, index, qp, sweep),
            "query_params": json.dumps(index.effective_query_params(**qp), sort_keys=True)}


@dataclass
class Built:
    """A built index of one candidate, and what its build cost."""

    candidate: Candidate
    spec: IndexSpec
    index: VectorIndex
    build_s: float
    size_bytes: int


def build(data: BenchSet, candidate: Candidate, threads: int) -> Built:
    """Build ``candidate`` on ``data`` with ``threads`` threads, timed."""
    spec = parse_spec(candidate.spec)
    index = spec.make(data.metric)
    index.validate(data.base.shape[1])
    index.set_threads(threads)
    t0 = time.perf_counter()
    index.build(data.base)
    return Built(candidate, spec, index, time.perf_counter() - t0, index.size_bytes())


def measure(data: BenchSet, built: Built, qp: dict[str, Any], settings: TuneSettings, runs: int | None = None,
            warmup: int | None = None) -> dict[str, Any]:
    """One point through the harness: its row (identifying columns, every metric, ``measured_at``)."""
    row = point_row(data, built.spec, built.index, qp, settings)
    row.update(measure_point(built.index, data, settings.k, qp, settings.threads, settings.build_threads,
                             runs or settings.runs, settings.warmup if warmup is None else warmup, built.build_s,
                             built.size_bytes, settings.point_budget_s))
    row["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    return row


def recall_at(data: BenchSet, built: Built, qp: dict[str, Any], settings: TuneSettings) -> dict[str, Any]:
    """The recall of one point from a batch search on all build threads, untimed: what a sweep's search for
    the target needs (the harness times only the points it finds, see :func:`measured_sweep`)."""
    built.index.set_threads(settings.build_threads)
    _, ids = built.index.search(data.queries, settings.k, **qp)
    recall = recall_ties(data.base, data.queries, ids, data.gt_distances, settings.k, data.metric)
    return {"query": dict(qp), "recall": float(recall.mean())}


def sweep_to_target(probe: Callable[[dict[str, Any]], dict[str, Any]], candidate: Candidate,
                    target: float) -> tuple[list[dict[str, Any]], float]:
    """For each fixed query setting of ``candidate``, the lowest-effort ladder point reaching ``target``.

    ``probe(query_params) -> row`` measures one point. The maximum-effort point of the highest setting is
    measured first: below the target there, the build is hopeless (an empty list comes back, with the
    best recall seen). Settings are in ascending effort, so the point found under one setting bounds the
    search under the next (recall grows with either parameter) and each later bisection is shorter."""
    ladder, name = candidate.ladder, candidate.param
    top_row = probe({name: ladder[-1], **candidate.extras[-1]})
    if top_row["recall"] < target:
        return [], float(top_row["recall"])
    found: list[dict[str, Any]] = []
    hi = len(ladder) - 1
    for i, extra in enumerate(candidate.extras):
        last = i == len(candidate.extras) - 1
        hit = top_row if last and hi == len(ladder) - 1 else None
        if hit is None:                                    # does this setting reach the target at all?
            row = probe({name: ladder[hi], **extra})
            if row["recall"] < target:
                continue
            hit = row
        lo, top = 0, hi
        while lo < top:
            mid = (lo + top) // 2
            row = probe({name: ladder[mid], **extra})
            if row["recall"] >= target:
                top, hit = mid, row
            else:
                lo = mid + 1
        found.append(hit)
        hi = top
    return found, float(top_row["recall"])


def measured_sweep(data: BenchSet, built: Built, settings: TuneSettings,
                   on_row: Callable[[dict[str, Any]], None]) -> tuple[list[dict[str, Any]], float]:
    """:func:`sweep_to_target` on recall alone, then the harness's measurement of each point found and of
    the ladder point below it (so the frontier shows the step that missed): ``(rows reaching the target,
    recall at maximum effort)``. Every measured row goes to ``on_row``."""
    cand = built.candidate
    found, top = sweep_to_target(lambda qp: recall_at(data, built, qp, settings), cand, settings.recall)
    hits: list[dict[str, Any]] = []
    for probe in found:
        qp = probe["query"]
        i = cand.ladder.index(qp[cand.param])
        below = [{**qp, cand.param: cand.ladder[i - 1]}] if i > 0 else []
        for point in [qp, *below]:
            row = measure(data, built, point, settings)
            on_row(row)
            if point is qp and row["recall"] >= settings.recall:
                hits.append(row)
    return hits, top


@dataclass(frozen=True)
class Outcome:
    """What a measured build configuration gave: its trial, value (None when pruned) and attributes."""

    number: int
    value: float | None
    attrs: dict[str, Any]


def outcomes(study: optuna.Study) -> dict[str, Outcome]:
    """The finished, non-repeated trials of ``study`` by build configuration (SPEC text)."""
    out: dict[str, Outcome] = {}
    for t in study.get_trials(deepcopy=False):
        if "spec" not in t.user_attrs or "repeat_of" in t.user_attrs:
            continue
        if t.state == optuna.trial.TrialState.COMPLETE:
            out[t.user_attrs["spec"]] = Outcome(t.number, float(t.value), dict(t.user_attrs))
        elif t.state == optuna.trial.TrialState.PRUNED:
            out[t.user_attrs["spec"]] = Outcome(t.number, None, dict(t.user_attrs))
    return out


class Tuner:
    """The objective of one study: build a suggested candidate, sweep it, return its QPS at the target.

    A build configuration already measured in the study (TPE re-suggests them in a discrete space) is not
    rebuilt: the trial takes over that outcome. ``on_point(row)`` receives every measured row (with
    ``trial`` and ``study`` columns)."""

    def __init__(self, data: BenchSet, settings: TuneSettings, study: optuna.Study,
                 on_point: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.data, self.settings, self.study, self.on_point = data, settings, study, on_point
        self.known = outcomes(study)
        self.repeats = 0

    def __call__(self, trial: optuna.Trial) -> float:
        n, dim = self.data.base.shape
        candidate = suggest(trial, self.settings.families, n, dim)
        trial.set_user_attr("spec", candidate.spec)
        prior = self.known.get(candidate.spec)
        if prior is not None:
            return self._repeat(trial, prior)
        self.repeats = 0
        try:
            built = build(self.data, candidate, self.settings.build_threads)
        except IndexSpecError as exc:              # a configuration this data cannot take (too few vectors)
            return self._prune(trial, str(exc))
        size_mb = built.size_bytes / 2**20
        trial.set_user_attr("build_s", built.build_s)
        trial.set_user_attr("size_mb", size_mb)
        self._constrain(trial, size_mb, built.build_s)
        if not feasible(trial):
            return self._prune(trial, f"over a limit: {size_mb:.1f} MiB, built in {built.build_s:.1f} s")

        def on_row(row: dict[str, Any]) -> None:
            row.update(trial=trial.number, study=self.study.study_name)
            if self.on_point is not None:
                self.on_point(row)

        found, top = measured_sweep(self.data, built, self.settings, on_row)
        trial.set_user_attr("max_recall", top)
        if not found:
            return self._prune(trial, f"recall {top:.4f} at maximum effort is below the target {self.settings.recall}")
        best = max(found, key=lambda r: r["qps"])
        for name in ("point", "recall", "qps", "qps_lo", "qps_hi"):  # qps_lo/hi: the harness's interval, if any
            if name in best:
                trial.set_user_attr(name, best[name])
        self.known[candidate.spec] = Outcome(trial.number, float(best["qps"]), dict(trial.user_attrs))
        return float(best["qps"])

    def _constrain(self, trial: optuna.Trial, size_mb: float, build_s: float) -> None:
        """Optuna constraints (feasible when <= 0): size over ``memory_mb``, build time over ``build_s``."""
        excess = {"memory_mb": (size_mb, self.settings.memory_mb), "build_s": (build_s, self.settings.build_s)}
        for key, (value, limit) in excess.items():
            if limit:
                trial.set_constraint(key, value - limit)
        trial.set_user_attr("excess", {k: v - lim for k, (v, lim) in excess.items() if lim})

    def _prune(self, trial: optuna.Trial, reason: str) -> float:
        trial.set_user_attr("pruned_because", reason)
        self.known[trial.user_attrs["spec"]] = Outcome(trial.number, None, dict(trial.user_attrs))
        raise optuna.TrialPruned(reason)

    def _repeat(self, trial: optuna.Trial, prior: Outcome) -> float:
        self.repeats += 1
        if self.repeats >= MAX_REPEATS:
            self.study.stop()
        for key, value in prior.attrs.items():
            trial.set_user_attr(key, value)
        if "size_mb" in prior.attrs:
            self._constrain(trial, prior.attrs["size_mb"], prior.attrs["build_s"])
        trial.set_user_attr("repeat_of", prior.number)
        if prior.value is None:
            raise optuna.TrialPruned(prior.attrs.get("pruned_because", "pruned"))
        return prior.value


def open_study(storage: optuna.storages.BaseStorage, data: BenchSet, settings: TuneSettings,
               starts: Sequence[dict[str, Any]] = STARTS) -> optuna.Study:
    """The study of this question in ``storage``, created (with ``starts`` enqueued: the first trials) or
    loaded.

    The sampler's seed moves on with the trials already run, so a resumed study does not replay the random
    start-up suggestions of the first run."""
    name = settings.study_name(data)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
        sampler = optuna.samplers.TPESampler(
            seed=settings.seed + existing.get(name, 0), n_startup_trials=len(STARTS) + 2, multivariate=True,
            group=True)
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    load_if_exists=True)
    if name not in existing:
        for start in starts:
            if start["family"] in settings.families:
                study.enqueue_trial(start, skip_if_exists=True)
    return study


def run_study(study: optuna.Study, data: BenchSet, settings: TuneSettings,
              on_point: Callable[[dict[str, Any]], None] | None = None, progress: bool = True) -> float:
    """Run trials until ``settings.budget_s`` is spent (or ``max_trials``); returns the wall time.

    Optuna checks the budget between trials, so the last trial may end up to one build and sweep late."""
    if settings.budget_s <= 0:
        return 0.0
    tuner = Tuner(data, settings, study, on_point)
    t0 = time.perf_counter()
    with tqdm(total=round(settings.budget_s), desc="tune", unit="s", disable=not progress) as bar:
        def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.n = min(bar.total, round(time.perf_counter() - t0))
            best = best_trial(study, settings)
            bar.set_postfix_str(f"trials {len(study.trials)}" + (f", best {best.user_attrs['point']} "
                                                                 f"{best.value:,.0f} QPS" if best else ""))
        study.optimize(tuner, n_trials=settings.max_trials, timeout=settings.budget_s, callbacks=[tick])
    return time.perf_counter() - t0


def feasible(trial: optuna.Trial | optuna.trial.FrozenTrial) -> bool:
    """Within every limit (all constraint values <= 0; a trial without constraints is)."""
    excess = trial.user_attrs.get("excess", {})
    return all(v <= 0 for v in excess.values())


def best_trial(study: optuna.Study, settings: TuneSettings) -> optuna.trial.FrozenTrial | None:
    """The feasible finished trial with the highest QPS at the target (None: no build reached it)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if feasible(t) and "point" in t.user_attrs]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def trial_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, build SPEC, value, point, build time, size, why pruned."""
    rows = [{"trial": t.number, "state": t.state.name, "spec": t.user_attrs.get("spec"), "qps": t.value,
             "point": t.user_attrs.get("point"), "recall": t.user_attrs.get("recall"),
             "build_s": t.user_attrs.get("build_s"), "size_mb": t.user_attrs.get("size_mb"),
             "repeat_of": t.user_attrs.get("repeat_of"), "pruned_because": t.user_attrs.get("pruned_because"),
             "duration_s": t.duration.total_seconds() if t.duration else None}
            for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)
