"""Speed figures of the hybrid layer: BM25 indexing plus retrieval per collection, and fusing 1000
queries x 1000 candidates per list with each method, against ranx's numba implementation of the same
method on the same runs. Each timing is the best of ``repeats``; ranx is compiled before timing."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from workbench.data import load_dataset
from workbench.hybrid.fusion import fuse
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.runs import Run

# our method and params -> ranx (norm, method, params) computing the same ranking
FUSIONS: dict[str, tuple[dict, tuple[str | None, str, dict]]] = {
    "rrf": ({"method": "rrf", "k": 60}, (None, "rrf", {"k": 60})),
    "convex_minmax": ({"method": "convex", "norm": "minmax", "weights": [0.5, 0.5]},
                      ("min-max", "wsum", {"weights": [0.5, 0.5]})),
    "convex_zscore": ({"method": "convex", "norm": "zscore", "weights": [0.5, 0.5], "missing": "zero"},
                      ("zmuv", "wsum", {"weights": [0.5, 0.5]})),
    "combsum": ({"method": "combsum"}, ("min-max", "sum", {})),
    "combmnz": ({"method": "combmnz"}, ("min-max", "mnz", {})),
}


def best_of(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        arg = setup() if setup else None
        t = time.perf_counter()
        fn() if setup is None else fn(arg)  # type: ignore[call-arg]
        times.append(time.perf_counter() - t)
    return min(times)


def bm25_timings(datasets: Sequence[str], repeats: int = 3) -> list[dict]:
    """Seconds to index a collection and retrieve the top 100 of all its queries."""
    rows = []
    BM25Retriever().index(["warm up the tokenizer and stemmer"], ["0"])  # imports out of the timing
    for name in datasets:
        ds = load_dataset(name)
        texts, queries = ds.doc_texts(), ds.query_texts()

        def index_and_retrieve() -> None:
            BM25Retriever().index(texts, ds.doc_ids).retrieve(queries, 100, ds.query_ids)

        rows.append({"dataset": ds.name, "docs": len(texts), "queries": len(queries),
                     "bm25_index_and_retrieve_s": best_of(index_and_retrieve, repeats)})
    return rows


def synthetic_runs(n_queries: int = 1000, depth: int = 1000, n_docs: int = 100_000, seed: int = 0) -> tuple[Run, Run]:
    """Two runs of ``depth`` distinct documents per query that share about half their documents."""
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    pool = np.stack([rng.choice(n_docs, size=int(depth * 1.5), replace=False) for _ in range(n_queries)])
    out = []
    for name, lo, cols, (a, b) in (("lexical", 0.0, slice(0, depth), (0.1, 30.0)),
                                   ("dense", -1.0, slice(depth // 2, depth // 2 + depth), (-0.2, 0.9))):
        scores = -np.sort(-rng.uniform(a, b, size=(n_queries, depth)), axis=1)
        out.append(Run(name, [f"q{i}" for i in range(n_queries)], pool[:, cols], scores, docs, lo))
    return out[0], out[1]


def fusion_timings(n_queries: int = 1000, depth: int = 1000, repeats: int = 3) -> dict:
    """Seconds to fuse two synthetic runs with each method, ours and ranx's."""
    import numba
    import ranx

    lex, dense = synthetic_runs(n_queries, depth)
    dicts = [r.to_dict(strict=False) for r in (lex, dense)]
    small = [{q: d for q, d in list(x.items())[:2]} for x in dicts]
    t = time.perf_counter()
    for _, (norm, method, params) in FUSIONS.values():  # numba compiles on first use
        ranx.fuse([ranx.Run.from_dict(d, name=n) for d, n in zip(small, "ab")], norm=norm, method=method,
                  params=params)
    compile_s = time.perf_counter() - t
    rows = []
    for name, (ours, (norm, method, params)) in FUSIONS.items():
        ours = dict(ours)
        m = ours.pop("method")
        t_ours = best_of(lambda: fuse([lex, dense], m, depth=depth, **ours), repeats)
        # ranx.fuse may modify the runs it is given: time it on fresh runs (built untimed).
        t_ranx = best_of(lambda runs: ranx.fuse(runs, norm=norm, method=method, params=params), repeats,
                         setup=lambda: [ranx.Run.from_dict(d, name=n) for d, n in zip(dicts, ("lex", "dense"))])
        rows.append({"method": name, "ours_s": t_ours, "ranx_s": t_ranx, "speedup": t_ranx / t_ours})
    return {"n_queries": n_queries, "candidates_per_list": depth, "ranx_threads": numba.get_num_threads(),
            "ranx_compile_s": compile_s, "methods": rows}
