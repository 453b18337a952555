"""Google's ScaNN: a k-means tree, anisotropic vector quantization ("asymmetric hashing") and exact
re-ordering (Guo et al., "Accelerating Large-Scale Inference with Anisotropic Vector Quantization", ICML 2020;
https://github.com/google-research/google-research/tree/master/scann).

A query scores the centroids, searches ``leaves_to_search`` leaves with 4-bit AH codes (``dims_per_block``
dimensions a code), and re-scores the best ``pre_reorder`` candidates exactly. The build follows
ann-benchmarks' ScaNN module: ``tree(leaves, ..., training_sample_size=n, spherical=<cosine>,
quantize_centroids=True)``, ``score_ah(2, anisotropic_quantization_threshold=0.2)``, ``reorder(...)``; its
default leaf count is about ``2 sqrt(n)`` (2,000 leaves for 1.2M GloVe vectors there, 284 on 20K here).

SPEC: ``scann:leaves=<int>,reorder=<int>,dims_per_block=<int>,threshold=<float>`` (defaults: ``2 sqrt(n)``,
100, 2, 0.2) with query parameters ``leaves_to_search`` (default ``leaves / 10``) and ``pre_reorder``
(default ``reorder``). Cosine and ``ip`` run as ScaNN's ``dot_product`` (which returns the similarity),
``l2`` as ``squared_l2`` (squared distances, as faiss). ScaNN has no filter during search:
``native_filter_modes = ()``, so the base class post-filters. ScaNN logs through absl straight to file
descriptor 2; builds and loads run with that descriptor pointed at /dev/null.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scann

from workbench.errors import IndexSpecError
from workbench.index.base import VectorIndex, read_index_file, write_index_file

_MEASURE = {"cosine": "dot_product", "ip": "dot_product", "l2": "squared_l2"}
#: build parameter -> (type, default); leaves None means about 2 sqrt(n), chosen at build time
BUILD_PARAMS: dict[str, tuple[type, Any]] = {"leaves": (int, None), "reorder": (int, 100),
                                             "dims_per_block": (int, 2), "threshold": (float, 0.2)}
QUERY_PARAMS: dict[str, type] = {"leaves_to_search": int, "pre_reorder": int}


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """The build parameters of ``scann:BODY`` (:data:`BUILD_PARAMS`), each a positive number."""
    build: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in BUILD_PARAMS:
            raise IndexSpecError(f"index spec {spec_text!r}: unknown scann build parameter {part!r}; "
                                 f"accepted: {', '.join(BUILD_PARAMS)}")
        kind = BUILD_PARAMS[name][0]
        try:
            v = kind(value)
        except ValueError:
            v = None
        if v is None or not math.isfinite(v) or v <= 0:
            raise IndexSpecError(f"index spec {spec_text!r}: scann {name}={value!r} must be a positive "
                                 f"{'integer' if kind is int else 'number'}")
        build[name] = v
    if "threshold" in build and build["threshold"] >= 1:
        raise IndexSpecError(f"index spec {spec_text!r}: scann threshold={build['threshold']} must lie in (0, 1) "
                             f"(the cosine above which the anisotropic loss weighs parallel error)")
    return {name: build.get(name, default) for name, (_, default) in BUILD_PARAMS.items()
            if build.get(name, default) is not None}


def build_text(build: dict[str, Any]) -> str:
    """The SPEC body of ``build``."""
    return ",".join(f"{k}={build[k]}" for k in BUILD_PARAMS if k in build)


def default_leaves(n: int) -> int:
    """About ``2 sqrt(n)`` leaves, at most ``n`` (ann-benchmarks' ratio; 284 on 20K vectors)."""
    return max(1, min(n, round(2 * math.sqrt(n))))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 on /dev/null: absl's C++ logging bypasses Python's ``sys.stderr``."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class ScannIndex(VectorIndex):
    """A ScaNN searcher (tree + AH + re-ordering) with fixed leaves and re-order size; query values per call."""

    library = "scann"
    QUERY_PARAMS = QUERY_PARAMS
    native_filter_modes: tuple[str, ...] = ()

    def __init__(self, leaves: int | None = None, reorder: int = 100, dims_per_block: int = 2,
                 threshold: float = 0.2, metric: str = "cosine") -> None:
        build = {"reorder": int(reorder), "dims_per_block": int(dims_per_block), "threshold": float(threshold)}
        super().__init__(metric, **({"leaves": int(leaves)} if leaves else {}), **build)
        self.leaves = int(leaves) if leaves else None
        self.reorder, self.dims_per_block, self.threshold = build["reorder"], build["dims_per_block"], threshold
        self._searcher_obj: Any = None
        self._n = 0
        self._size: int | None = None
        self._built_leaves: int | None = None

    @property
    def family(self) -> str:
        return "scann:tree-AH"

    @property
    def label(self) -> str:
        return "scann:" + build_text(self.build_params)

    def validate(self, dim: int) -> None:
        if self.dims_per_block > dim:
            raise IndexSpecError(f"{self.label}: dims_per_block={self.dims_per_block} exceeds the dimension {dim}")

    def _build(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        leaves = self.leaves or default_leaves(n)
        if leaves > n:
            raise IndexSpecError(f"{self.label}: leaves={leaves} but only {n} vectors; use at most {n} "
                                 f"(about 2 sqrt(n) = {default_leaves(n)} is usual)")
        builder = scann.scann_ops_pybind.builder(vectors, 10, _MEASURE[self.metric])
        builder = builder.tree(leaves, max(1, leaves // 10), training_sample_size=n,
                               spherical=self.metric == "cosine", quantize_centroids=True)
        builder = builder.score_ah(self.dims_per_block, anisotropic_quantization_threshold=self.threshold)
        builder = builder.reorder(self.reorder).set_n_training_threads(self.threads)
        with _quiet_stderr():
            self._searcher_obj = builder.build()
        self._searcher_obj.set_num_threads(self.threads)
        self._n, self._built_leaves, self._size = n, leaves, None

    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        raise AssertionError("scann has no native filter mode")  # never called: native_filter_modes is empty

    def _args(self, k: int, params: dict[str, Any]) -> tuple[int, int, int]:
        query = {**self._default_query_params(), **params}
        leaves = min(int(query["leaves_to_search"]), self._built_leaves)
        return k, max(k, int(query["pre_reorder"])), leaves

    def _search(self, queries: np.ndarray, k: int, flt: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        k, pre, leaves = self._args(k, params)
        if self.threads > 1:
            ids, d = self._searcher_obj.search_batched_parallel(queries, k, pre, leaves)
        else:
            ids, d = self._searcher_obj.search_batched(queries, k, pre, leaves)
        ids = np.asarray(ids, dtype=np.int64)
        d = np.asarray(d, dtype=np.float32)
        # too few candidates in the searched leaves: ScaNN pads a row with NaN scores
        missing = ~np.isfinite(d)
        ids[missing] = -1
        return d, ids

    def _searcher(self, k: int, params: dict[str, Any], flt: Any | None) -> Callable[[np.ndarray], np.ndarray]:
        k, pre, leaves = self._args(k, params)
        search = self._searcher_obj.searcher.search           # the pybind call, without the Python wrapper

        def one(row: np.ndarray) -> np.ndarray:
            return search(row[0], k, pre, leaves)[0]
        return one

    def _default_query_params(self) -> dict[str, Any]:
        leaves = self._built_leaves or self.leaves or 10
        return {"leaves_to_search": max(1, leaves // 10), "pre_reorder": self.reorder}

    def _payload(self) -> bytes:
        """The serialized searcher directory as one uncompressed tar."""
        tmp = Path(tempfile.mkdtemp(suffix=".scann"))
        try:
            self._searcher_obj.serialize(str(tmp), relative_path=True)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for f in sorted(tmp.iterdir()):
                    tar.add(f, arcname=f.name)
            return buf.getvalue()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def save(self, path: str | Path) -> None:
        self._require_built()
        meta = {"library": self.library, **self.build_params, "metric": self.metric, "dim": self.dim,
                "n": self._n, "built_leaves": self._built_leaves}
        write_index_file(path, meta, self._payload())

    @classmethod
    def load(cls, path: str | Path) -> "ScannIndex":
        meta, payload = read_index_file(path)
        out = cls(meta.get("leaves"), meta["reorder"], meta["dims_per_block"], meta["threshold"], meta["metric"])
        tmp = Path(tempfile.mkdtemp(suffix=".scann"))
        try:
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            with _quiet_stderr():
                out._searcher_obj = scann.scann_ops_pybind.load_searcher(str(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out._searcher_obj.set_num_threads(out.threads)
        out.dim, out._n, out._built_leaves, out._size = meta["dim"], meta["n"], meta["built_leaves"], len(payload)
        return out

    def size_bytes(self) -> int:
        self._require_built()
        if self._size is None:
            self._size = len(self._payload())
        return self._size

    def set_threads(self, n: int) -> None:
        self.threads = int(n)
        if self._searcher_obj is not None:
            self._searcher_obj.set_num_threads(self.threads)

    @property
    def raw(self) -> Any:
        """The library's own searcher (for bare-library comparisons)."""
        return self._searcher_obj

    @property
    def ntotal(self) -> int:
        return self._n
