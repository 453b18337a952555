"""A DATA argument (``workbench.embed.sets.load_vector_set``) as the harness's ``BenchSet``."""

from __future__ import annotations

from workbench.bench.harness import BenchSet
from workbench.embed.sets import load_vector_set


def load_bench_data(data: str, progress: bool = True) -> BenchSet:
    """The vector set ``data`` names, prepared, with its exact neighbours (computed once, then cached)."""
    vs, source = load_vector_set(data, progress)
    return BenchSet.from_vector_set(vs, source=source, progress=progress)
