"""The tuner's search space: one entry per index family, each a conditional sub-space of build parameters
(suggested by an Optuna trial, define-by-run) and the query parameter swept on every build, as an
ascending ladder of effort.

Families (``--families``), after the libraries users pick (issue 13):

- ``faiss-hnsw``: faiss ``HNSW{M},{Flat|SQ8|SQfp16}`` (Malkov & Yashunin, TPAMI 2018; SQ8 stores one byte a
  dimension and scans less memory) and ``efConstruction`` (faiss's default is 40), swept over ``efSearch``;
- ``hnswlib``: ``M`` and ``ef_construction``, swept over ``ef``;
- ``usearch``: ``M``, ``ef_construction`` and the stored type ``f32|f16|i8``, swept over ``ef``;
- ``scann``: leaves (a multiple of sqrt(n)), AH ``dims_per_block``, the anisotropic threshold (Guo et al.,
  ICML 2020), swept over ``leaves_to_search`` at each re-order depth ``pre_reorder`` of :data:`SCANN_REORDER`;
- ``faiss-ivf-fs``: ``IVF{nlist},PQ{m}x4fs,RFlat`` (4-bit fast-scan PQ, André et al., "Quicker ADC",
  TPAMI 2019, re-ranked exactly), swept over ``nprobe`` at each ``k_factor`` of :data:`FS_K_FACTORS`.

:data:`STARTS` are the first trials of a new study (Optuna ``enqueue_trial``): the configurations an
interleaved hand comparison on the 44,722 x 384 MiniLM sentence set found fastest, and ScaNN's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from workbench.bench.reference import ivf_lists
from workbench.errors import TuneError
from workbench.index.scann import default_leaves

#: ascending effort ladders; a build is swept along one, stopping at the first point reaching the target
GRAPH_EF = (10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128, 192, 256)
SCANN_LEAVES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128, 192, 256)
IVF_PROBES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256)
#: secondary query values, each with its own sweep along the ladder: ScaNN's exact re-ordering depth and
#: the fast-scan refine factor (candidates re-ranked = k * k_factor)
SCANN_REORDER = (20, 30, 40, 60, 100)
FS_K_FACTORS = (2, 4, 8, 16)


@dataclass(frozen=True)
class Candidate:
    """One build configuration to try: its SPEC text (no ``?``), the swept query parameter and its ladder,
    and the fixed query values each sweep runs with (one sweep per entry of ``extras``)."""

    spec: str
    param: str
    ladder: tuple[int, ...]
    extras: tuple[dict[str, Any], ...] = field(default_factory=lambda: ({},))


@dataclass(frozen=True)
class Family:
    """A family of the space: ``suggest(trial, n, dim)`` picks its build parameters (names prefixed by the
    family, so the space is conditional on ``family``) and returns the :class:`Candidate`."""

    name: str
    library: str
    suggest: Callable[[optuna.Trial, int, int], Candidate]


def _hnsw_faiss(trial: optuna.Trial, n: int, dim: int) -> Candidate:
    m = trial.suggest_categorical("faiss-hnsw.M", (8, 12, 16, 24, 32, 48))
    store = trial.suggest_categorical("faiss-hnsw.storage", ("Flat", "SQ8", "SQfp16"))
    efc = trial.suggest_categorical("faiss-hnsw.efConstruction", (40, 80, 160, 320))
    return Candidate(f"faiss:HNSW{m},{store},efConstruction={efc}", "efSearch", GRAPH_EF)


def _hnswlib(trial: optuna.Trial, n: int, dim: int) -> Candidate:
    m = trial.suggest_categorical("hnswlib.M", (6, 8, 12, 16, 24, 32))
    efc = trial.suggest_categorical("hnswlib.ef_construction", (64, 100, 200, 400))
    return Candidate(f"hnswlib:M={m},ef_construction={efc}", "ef", GRAPH_EF)


def _usearch(trial: optuna.Trial, n: int, dim: int) -> Candidate:
    m = trial.suggest_categorical("usearch.M", (8, 12, 16, 24, 32))
    efc = trial.suggest_categorical("usearch.ef_construction", (64, 128, 256))
    dtype = trial.suggest_categorical("usearch.dtype", ("f32", "f16", "i8"))
    return Candidate(f"usearch:M={m},ef_construction={efc},dtype={dtype}", "ef", GRAPH_EF)


def scann_leaves(n: int, factor: float) -> int:
    """``factor * sqrt(n)`` leaves (ann-benchmarks' default is factor 2), at least 1 and at most n / 8, so a
    leaf averages 8 vectors or more."""
    return max(1, min(n // 8 or 1, round(factor * math.sqrt(n))))


def _scann(trial: optuna.Trial, n: int, dim: int) -> Candidate:
    factor = trial.suggest_categorical("scann.leaves_per_sqrt_n", (0.5, 1.0, 2.0, 3.0, 4.0))
    # 4 dimensions a block topped out at recall 0.78 on the sentence set (423 leaves, re-ordering 40)
    dpb = trial.suggest_categorical("scann.dims_per_block", tuple(b for b in (1, 2) if b <= dim))
    threshold = trial.suggest_categorical("scann.threshold", (0.1, 0.2, 0.3))
    leaves = scann_leaves(n, factor)
    ladder = tuple(v for v in SCANN_LEAVES if v < leaves) + (leaves,)
    return Candidate(f"scann:leaves={leaves},reorder={max(SCANN_REORDER)},dims_per_block={dpb},threshold={threshold}",
                     "leaves_to_search", ladder, tuple({"pre_reorder": r} for r in SCANN_REORDER))


def _ivf_fs(trial: optuna.Trial, n: int, dim: int) -> Candidate:
    base = ivf_lists(n)
    # fast-scan lists are cheap to scan, so fewer, longer lists pay: IVF64 and IVF128 led on the sentence set
    nlist = trial.suggest_categorical("faiss-ivf-fs.nlist_per_default", (0.25, 0.5, 1.0, 2.0, 4.0))
    lists = max(8, min(n // 39 or 8, int(base * nlist)))          # >= 39 training vectors a centroid
    # 4-bit sub-quantizers of 1, 2, 4 or 8 dimensions; fast-scan packs codes in pairs, so m is even
    subs = tuple(dim // s for s in (8, 4, 2, 1) if dim % s == 0 and (dim // s) % 2 == 0)
    if not subs:
        raise TuneError(f"faiss-ivf-fs needs an even number of sub-quantizers; dimension {dim} has none")
    m = trial.suggest_categorical("faiss-ivf-fs.m", subs)
    ladder = tuple(v for v in IVF_PROBES if v < lists) + (lists,)
    return Candidate(f"faiss:IVF{lists},PQ{m}x4fs,RFlat", "nprobe", ladder,
                     tuple({"k_factor": f} for f in FS_K_FACTORS))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("faiss-hnsw", "faiss", _hnsw_faiss),
    Family("hnswlib", "hnswlib", _hnswlib),
    Family("usearch", "usearch", _usearch),
    Family("scann", "scann", _scann),
    Family("faiss-ivf-fs", "faiss", _ivf_fs),
)}

#: first trials of a new study. In one interleaved run on the sentence set (recall@10 >= 0.95, 7 rounds,
#: load 12-16 on 2 cores) faiss HNSW32,SQ8 at efSearch=16 (recall 0.951, a 28 MB index whose codes fit the
#: 32 MiB L3 beside the links) had a median of 2,721 QPS, ScaNN's default 2,542, faiss HNSW32,Flat 1,928,
#: hnswlib M=16 1,660; 846 leaves or 1 dimension a block made ScaNN slower. The slow usearch builds (111 s
#: under load) are left to the sampler.
STARTS: tuple[dict[str, Any], ...] = (
    {"family": "faiss-hnsw", "faiss-hnsw.M": 32, "faiss-hnsw.storage": "SQ8", "faiss-hnsw.efConstruction": 40},
    {"family": "scann", "scann.leaves_per_sqrt_n": 2.0, "scann.dims_per_block": 2, "scann.threshold": 0.2},
    {"family": "faiss-hnsw", "faiss-hnsw.M": 24, "faiss-hnsw.storage": "SQ8", "faiss-hnsw.efConstruction": 40},
    {"family": "hnswlib", "hnswlib.M": 12, "hnswlib.ef_construction": 100},
)


def check_families(names: Any) -> tuple[str, ...]:
    """``names`` (a comma-separated string, a sequence, or None for all) as known family names."""
    if names is None:
        return tuple(FAMILIES)
    items = [s.strip() for s in (names.split(",") if isinstance(names, str) else names)]
    items = [s for s in items if s]
    unknown = [s for s in items if s not in FAMILIES]
    if unknown or not items:
        raise TuneError(f"unknown tuner famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown) or '(none given)'}; "
                        f"known: {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(items))


def suggest(trial: optuna.Trial, families: tuple[str, ...], n: int, dim: int) -> Candidate:
    """The trial's family, then that family's build parameters."""
    name = trial.suggest_categorical("family", families)
    return FAMILIES[name].suggest(trial, n, dim)


# -- the comparison's defaults: each library's own configuration, its query parameter swept ---------------
def default_candidates(n: int, dim: int) -> dict[str, Candidate]:
    """The best-known DEFAULT configuration of every single library (issue 13): hnswlib M=16,
    ef_construction=200; faiss HNSW32,Flat; usearch M=16 (ef_construction 128, f32); ScaNN's ann-benchmarks
    setting (about 2 sqrt(n) leaves, AH with 2 dimensions a block, threshold 0.2, re-ordering), each swept
    along the same ladders as the tuner's candidates."""
    leaves = default_leaves(n)
    return {
        "hnswlib": Candidate("hnswlib:M=16,ef_construction=200", "ef", GRAPH_EF),
        "faiss": Candidate("faiss:HNSW32,Flat", "efSearch", GRAPH_EF),
        "usearch": Candidate("usearch:M=16,ef_construction=128,dtype=f32", "ef", GRAPH_EF),
        "scann": Candidate(f"scann:leaves={leaves},reorder=100", "leaves_to_search",
                           tuple(v for v in SCANN_LEAVES if v < leaves) + (leaves,),
                           tuple({"pre_reorder": r} for r in SCANN_REORDER)),
    }
