"""The SPEC grammar of ``--index`` (one build configuration and the query values to sweep) and the registry
of index libraries it names.

::

    spec    := "exact" | library ":" body [ "?" sweep ]
    sweep   := name "=" value ("," value)* ("&" name "=" value ("," value)*)*

``body`` is the library's build configuration, parsed by the library (``faiss:IVF256,PQ48,RFlat`` is a
factory string, ``hnswlib:M=16,ef_construction=200`` names its parameters). A body may contain commas, so
the sweep starts at the first ``?``. Several swept parameters form a grid, e.g.
``faiss:IVF256,PQ48,RFlat?nprobe=8,16&k_factor=1,4``. Sweep values are typed by the library's
``QUERY_PARAMS``: an integer parameter takes integers only (``nprobe=2.7`` is refused, not truncated), a
float parameter finite numbers (``nan`` and ``inf`` are refused), a string parameter any text.

Registry contract. :data:`LIBRARIES` maps a library name to ``"module.path:ClassName"``. The module is
imported only when a spec names its library, so an optional package that is missing breaks that library
alone (with a message saying so), never ``workbench --help`` or the other libraries. The module exposes:

- ``parse_build(body: str, spec_text: str) -> dict``: the build parameters of ``library:body``, every key a
  keyword argument of the class; bad input raises ``IndexSpecError`` quoting ``spec_text``;
- ``QUERY_PARAMS: dict[str, type]``: each query parameter and its type, ``int``, ``float`` or ``str``
  (the class carries the same table as ``VectorIndex.QUERY_PARAMS``, which checks values at search time);
- optionally ``build_text(build: dict) -> str``: the body that ``parse_build`` reads back into ``build``
  (default ``name=value`` pairs joined by commas);

and ``ClassName`` is a :class:`workbench.index.base.VectorIndex` built as ``ClassName(metric=..., **build)``.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from workbench.errors import IndexSpecError
from workbench.index.base import QUERY_PARAM_TYPES, VectorIndex

LIBRARIES: dict[str, str] = {
    "faiss": "workbench.index.faiss:FaissIndex",
    "hnswlib": "workbench.index.hnswlib:HnswlibIndex",
    "exact": "workbench.index.exact:ExactIndex",
    "pgvector": "workbench.index.pgvector:PgvectorIndex",
    "lancedb": "workbench.index.lancedb:LancedbIndex",
    "scann": "workbench.index.scann:ScannIndex",
    "usearch": "workbench.index.usearch:UsearchIndex",
}
#: libraries whose spec is the bare name (no ``:`` needed)
BARE = ("exact",)


@functools.cache
def library(name: str) -> tuple[ModuleType, type[VectorIndex]]:
    """The module and index class registered as ``name``, imported on first use."""
    if name not in LIBRARIES:
        raise IndexSpecError(f"unknown index library {name!r}; registered: {', '.join(LIBRARIES)}")
    module_path, _, class_name = LIBRARIES[name].partition(":")
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise IndexSpecError(f"index library {name} is unavailable: {exc}") from None
    cls = getattr(module, class_name, None)
    is_index = isinstance(cls, type) and issubclass(cls, VectorIndex)
    if not is_index or not callable(getattr(module, "parse_build", None)):
        raise IndexSpecError(f"index library {name}: {module_path} must define parse_build and the VectorIndex "
                             f"subclass {class_name} (see workbench.index.spec)")
    bad = {p: t for p, t in getattr(module, "QUERY_PARAMS", {}).items() if t not in QUERY_PARAM_TYPES}
    if bad or not hasattr(module, "QUERY_PARAMS"):
        raise IndexSpecError(f"index library {name}: {module_path}.QUERY_PARAMS must map names to int, float or "
                             f"str, got {bad or 'nothing'}")
    return module, cls


@dataclass(frozen=True)
class IndexSpec:
    """A build configuration (``library``, ``build``) and the query-parameter values to sweep."""

    library: str
    build: dict[str, Any]
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The build configuration as text (the part before ``?``)."""
        module, _ = library(self.library)
        body = (module.build_text(self.build) if hasattr(module, "build_text")
                else ",".join(f"{k}={v}" for k, v in self.build.items()))
        return self.library if self.library in BARE and not body else f"{self.library}:{body}"

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
        _, cls = library(self.library)
        return cls(metric=metric, **self.build)


def _value(text: str, kind: type, where: str) -> Any:
    """One swept value of type ``kind``, parsed from ``text``."""
    if kind is str:
        if not text:
            raise IndexSpecError(f"{where}: empty value")
        return text
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise IndexSpecError(f"{where}: {text!r} is not {what}") from None
    if not math.isfinite(value) or value <= 0:
        raise IndexSpecError(f"{where}: {text!r} must be a positive, finite number")
    return value


def _sweep(text: str, spec: str, name: str, types: dict[str, type]) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for part in text.split("&"):
        param, eq, values = part.partition("=")
        param = param.strip()
        if not eq or not param or not values.strip():
            raise IndexSpecError(f"index spec {spec!r}: expected name=v1,v2,... after '?', got {part!r}")
        if param not in types:
            raise IndexSpecError(f"index spec {spec!r}: unknown {name} query parameter(s) {param}; "
                                 f"accepted: {', '.join(types) or 'none'}")
        if param in out:
            raise IndexSpecError(f"index spec {spec!r}: query parameter {param} given twice")
        out[param] = tuple(_value(v.strip(), types[param], f"index spec {spec!r}, {param}")
                           for v in values.split(","))
    return out


def parse_spec(text: str) -> IndexSpec:
    """Parse one ``--index`` SPEC; IndexSpecError quotes the spec and says what is wrong."""
    head, q, sweep_text = text.partition("?")
    name, colon, body = head.partition(":")
    name = name.strip()
    if name not in LIBRARIES or not (colon or name in BARE):
        starts = ", ".join(n if n in BARE else f"{n}:" for n in LIBRARIES)
        raise IndexSpecError(f"index spec {text!r}: must start with one of {starts}")
    module, _ = library(name)
    build = module.parse_build(body, text)
    sweep = _sweep(sweep_text, text, name, module.QUERY_PARAMS) if q else {}
    return IndexSpec(name, build, sweep)
