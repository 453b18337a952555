"""The SPEC grammar of ``workbench ann --index``: one build configuration and the query values to sweep.

::

    spec    := "faiss:" FACTORY [ "?" sweep ]
             | "hnswlib:" build [ "?" sweep ]
    build   := name "=" int ("," name "=" int)*        # M, ef_construction
    sweep   := name "=" value ("," value)* ("&" name "=" value ("," value)*)*

A faiss factory string contains commas (``IVF256,PQ48,RFlat``), so the sweep starts at the first ``?``.
Several swept parameters form a grid, e.g. ``faiss:IVF256,PQ48,RFlat?nprobe=8,16&k_factor=1,4``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from workbench.index.base import IndexSpecError, VectorIndex

LIBRARIES = ("faiss", "hnswlib")
HNSWLIB_BUILD = ("M", "ef_construction")


@dataclass(frozen=True)
class IndexSpec:
    """A build configuration (``library``, ``build``) and the query-parameter values to sweep."""

    library: str
    build: dict[str, Any]
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The build configuration as text (the part before ``?``)."""
        if self.library == "faiss":
            return f"faiss:{self.build['factory']}"
        return "hnswlib:" + ",".join(f"{k}={v}" for k, v in self.build.items())

    @property
    def text(self) -> str:
        """The spec in the grammar above; ``parse_spec(spec.text) == spec``."""
        if not self.sweep:
            return self.label
        return self.label + "?" + "&".join(f"{k}=" + ",".join(str(v) for v in vs) for k, vs in self.sweep.items())

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the swept values (one empty point when nothing is swept)."""
        names = list(self.sweep)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.sweep[n] for n in names))]

    def make(self, metric: str) -> VectorIndex:
        """A new, unbuilt index of this configuration."""
        if self.library == "faiss":
            from workbench.index.faiss import FaissIndex
            return FaissIndex(metric=metric, **self.build)
        from workbench.index.hnswlib import HnswlibIndex
        return HnswlibIndex(metric=metric, **self.build)


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise IndexSpecError(f"{where}: {text!r} is not a number") from None


def _sweep(text: str, spec: str) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for part in text.split("&"):
        name, eq, values = part.partition("=")
        name = name.strip()
        if not eq or not name or not values.strip():
            raise IndexSpecError(f"index spec {spec!r}: expected name=v1,v2,... after '?', got {part!r}")
        if name in out:
            raise IndexSpecError(f"index spec {spec!r}: query parameter {name} given twice")
        out[name] = tuple(_number(v.strip(), f"index spec {spec!r}, {name}") for v in values.split(","))
    return out


def parse_spec(text: str) -> IndexSpec:
    """Parse one ``--index`` SPEC; IndexSpecError quotes the spec and says what is wrong."""
    library, colon, rest = text.partition(":")
    if not colon or library not in LIBRARIES:
        raise IndexSpecError(f"index spec {text!r}: must start with one of "
                             f"{', '.join(l + ':' for l in LIBRARIES)}")
    body, q, sweep_text = rest.partition("?")
    sweep = _sweep(sweep_text, text) if q else {}
    if library == "faiss":
        if not body.strip():
            raise IndexSpecError(f"index spec {text!r}: missing the faiss factory string (e.g. faiss:HNSW32,Flat)")
        bad = sorted(set(sweep) - {"nprobe", "efSearch", "k_factor"})
        if bad:
            raise IndexSpecError(f"index spec {text!r}: unknown faiss query parameter(s) {', '.join(bad)}; "
                                 "accepted: nprobe, efSearch, k_factor")
        return IndexSpec("faiss", {"factory": body.strip()}, sweep)
    build: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, eq, value = part.partition("=")
        if not eq or name not in HNSWLIB_BUILD:
            raise IndexSpecError(f"index spec {text!r}: expected M=<int>,ef_construction=<int>, got {part!r}")
        v = _number(value, f"index spec {text!r}, {name}")
        if not isinstance(v, int) or v <= 0:
            raise IndexSpecError(f"index spec {text!r}: {name} must be a positive integer, got {value!r}")
        build[name] = v
    bad = sorted(set(sweep) - {"ef"})
    if bad:
        raise IndexSpecError(f"index spec {text!r}: unknown hnswlib query parameter(s) {', '.join(bad)}; accepted: ef")
    return IndexSpec("hnswlib", {"M": build.get("M", 16), "ef_construction": build.get("ef_construction", 200)},
                     sweep)
