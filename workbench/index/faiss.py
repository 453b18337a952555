"""faiss indexes built from ``index_factory`` strings (Johnson, Douze, Jégou, "Billion-scale similarity
search with GPUs", 2017; Douze et al., "The Faiss library", 2024).

Query parameters go per call through ``faiss.SearchParameters*`` objects, so one built index serves a
whole sweep and concurrent settings never leak between calls: ``nprobe`` (IVF), ``efSearch`` (HNSW) and
``k_factor`` (the ``,RFlat`` refine stage re-ranks ``k * k_factor`` candidates with exact distances).
Pre-filtering passes an ``IDSelectorBatch`` in the same parameter object, at the level that scans codes.

SPEC: ``faiss:FACTORY[,efConstruction=N]`` (the factory string, commas and all, then build options) with
query parameters ``nprobe``,
``efSearch`` (integers) and ``k_factor`` (a number).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

import faiss
import numpy as np

from workbench.errors import IndexSpecError
from workbench.index.base import VectorIndex, read_index_file, write_index_file

_METRIC = {"cosine": faiss.METRIC_INNER_PRODUCT, "ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
QUERY_PARAMS: dict[str, type] = {"nprobe": int, "efSearch": int, "k_factor": float}


#: build options after the factory string, as ``name=N`` (a positive integer): SPEC name -> keyword argument
BUILD_OPTIONS: dict[str, str] = {"efConstruction": "ef_construction"}


def parse_build(body: str, spec_text: str) -> dict[str, Any]:
    """The build parameters of ``faiss:BODY``: the factory string (checked against faiss at build time), then
    optional ``name=N`` options of :data:`BUILD_OPTIONS` (a factory string has no ``=``), e.g.
    ``faiss:HNSW32,SQ8,efConstruction=200``."""
    parts = [p.strip() for p in body.split(",")]
    cut = next((i for i, p in enumerate(parts) if "=" in p), len(parts))
    factory, options = ",".join(parts[:cut]), parts[cut:]
    if not factory:
        raise IndexSpecError(f"index spec {spec_text!r}: missing the faiss factory string (e.g. faiss:HNSW32,Flat)")
    out: dict[str, Any] = {"factory": factory}
    for part in options:
        name, _, value = part.partition("=")
        if name not in BUILD_OPTIONS:
            raise IndexSpecError(f"index spec {spec_text!r}: {part!r} after the factory string is not a faiss build "
                                 f"option; accepted: {', '.join(f'{n}=N' for n in BUILD_OPTIONS)}")
        if not value.isdigit() or int(value) < 1:
            raise IndexSpecError(f"index spec {spec_text!r}: {name}={value!r} must be a positive integer")
        if BUILD_OPTIONS[name] in out:
            raise IndexSpecError(f"index spec {spec_text!r}: {name} given twice")
        out[BUILD_OPTIONS[name]] = int(value)
    return out


def build_text(build: dict[str, Any]) -> str:
    """The SPEC body of ``build``: its factory string, then its build options."""
    options = [f"{name}={build[key]}" for name, key in BUILD_OPTIONS.items() if build.get(key)]
    return ",".join([str(build["factory"]), *options])


def _layers(index: Any) -> Iterator[Any]:
    """``index`` and every index nested in it (refine and pre-transform wrappers), each downcast."""
    index = faiss.downcast_index(index)
    yield index
    for child in ("base_index", "index"):            # IndexRefine, IndexPreTransform
        if hasattr(index, child):
            yield from _layers(getattr(index, child))


def _hnsw(index: Any) -> Any:
    """The IndexHNSW inside ``index``, or None."""
    return next((i for i in _layers(index) if isinstance(i, faiss.IndexHNSW)), None)


def _skip_polysemous_training(index: Any) -> None:
    """The factory turns on polysemous training for PQ codes; it only serves searches with
    ``polysemous_ht > 0``, which nothing here uses, and dominated IVF-PQ training time (20 s of 21 s)."""
    for layer in _layers(index):
        if hasattr(layer, "do_polysemous_training"):
            layer.do_polysemous_training = False


def _set_opq_niter(index: Any, niter: int) -> None:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                vt.niter = niter


class FaissIndex(VectorIndex):
    """A faiss index described by a factory string such as ``IVF256,PQ48,RFlat``."""

    library = "faiss"
    QUERY_PARAMS = QUERY_PARAMS

    def __init__(self, factory: str, metric: str = "cosine", train_size: int | None = None, seed: int = 0,
                 opq_niter: int | None = None, ef_construction: int | None = None) -> None:
        """``train_size`` caps the vectors used to train IVF/PQ/SQ/OPQ (a seeded sample); None uses all.
        ``opq_niter`` sets OPQ's alternating-optimisation rounds (faiss default 50, each retraining the PQ:
        minutes at 384-d on 2 cores). ``ef_construction`` is HNSW's candidate list while inserting (faiss
        default 40, hnswlib's 200: a better graph reaches a recall at a lower ``efSearch``)."""
        build = ({"factory": factory} | ({"train_size": train_size} if train_size else {})
                 | ({"opq_niter": opq_niter} if opq_niter else {})
                 | ({"ef_construction": ef_construction} if ef_construction else {}))
        super().__init__(metric, **build)
        self.factory = factory
        self.train_size = train_size
        self.seed = seed
        self.opq_niter = opq_niter
        self.ef_construction = ef_construction
        self._index: Any = None

    @property
    def family(self) -> str:
        # drop sizes (IVF256 -> IVF, PQ48x4 -> PQ, OPQ48_192 -> OPQ), keep code types (SQ8, SQfp16)
        return "faiss:" + re.sub(r"(IVF|HNSW|OPQ|PQ|PCAR?|RR|NSG)\d+(x\d+)?(_\d+)?", r"\1", self.factory)

    @property
    def label(self) -> str:
        return "faiss:" + build_text({"factory": self.factory, "ef_construction": self.ef_construction})

    def validate(self, dim: int) -> None:
        try:
            index = faiss.index_factory(dim, self.factory, _METRIC[self.metric])
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected"
            raise IndexSpecError(f"faiss cannot build factory string {self.factory!r} at dimension {dim}: "
                                 f"{reason}") from None
        if self.ef_construction and _hnsw(index) is None:
            raise IndexSpecError(f"faiss:{self.factory}: efConstruction applies to HNSW indexes only")

    def _build(self, vectors: np.ndarray) -> None:
        index = faiss.index_factory(vectors.shape[1], self.factory, _METRIC[self.metric])
        _skip_polysemous_training(index)
        if self.ef_construction:
            _hnsw(index).hnsw.efConstruction = self.ef_construction
        if self.opq_niter:
            _set_opq_niter(index, self.opq_niter)
        if not index.is_trained:
            train = vectors
            if self.train_size and self.train_size < len(vectors):
                rows = np.random.default_rng(self.seed).choice(len(vectors), self.train_size, replace=False)
                train = vectors[np.sort(rows)]
            _check_training_size(index, self.factory, len(train))
            try:
                index.train(train)
            except RuntimeError as exc:  # PQ/SQ codebooks need more points than their centroids too
                found = _TOO_FEW.search(str(exc))
                if not found:
                    raise
                raise IndexSpecError(f"faiss:{self.factory}: {found[1]} training vectors for {found[2]} "
                                     f"clusters of a codebook; use more vectors or a smaller code") from None
        index.add(vectors)
        self._index = index

    def _make_filter(self, ids: np.ndarray, mode: str) -> Any:
        return faiss.IDSelectorBatch(ids)

    def _search(self, queries: np.ndarray, k: int, flt: Any | None,
                params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        faiss.omp_set_num_threads(self.threads)
        sp, _keep = self._parameters(params, flt)
        return self._index.search(queries, k, params=sp)

    def _searcher(self, k: int, params: dict[str, Any], flt: Any | None) -> Callable[[np.ndarray], np.ndarray]:
        faiss.omp_set_num_threads(self.threads)
        sp, keep = self._parameters(params, flt)
        search = self._index.search

        def one(row: np.ndarray, _keep: list = keep) -> np.ndarray:
            return search(row, k, params=sp)[1]
        return one

    def _parameters(self, params: dict[str, Any], sel: Any) -> tuple[Any, list]:
        """The SearchParameters tree matching this index's structure; also every object it points to
        (SWIG does not keep nested parameter objects alive)."""
        used: set[str] = set()
        keep: list = [sel]

        def make(index: Any) -> Any:
            index = faiss.downcast_index(index)
            if isinstance(index, faiss.IndexRefine):
                used.add("k_factor")
                sp = faiss.IndexRefineSearchParameters()
                sp.k_factor = float(params.get("k_factor", index.k_factor))
                sp.base_index_params = make(index.base_index)
            elif isinstance(index, faiss.IndexPreTransform):
                sp = faiss.SearchParametersPreTransform()
                sp.index_params = make(index.index)
            elif isinstance(index, faiss.IndexIVF):
                used.add("nprobe")
                sp = faiss.SearchParametersIVF()
                sp.nprobe = int(params.get("nprobe", index.nprobe))
                if sel is not None:
                    sp.sel = sel
            elif isinstance(index, faiss.IndexHNSW):
                used.add("efSearch")
                sp = faiss.SearchParametersHNSW()
                sp.efSearch = int(params.get("efSearch", index.hnsw.efSearch))
                if sel is not None:
                    sp.sel = sel
            else:
                sp = faiss.SearchParameters()
                if sel is not None:
                    sp.sel = sel
            keep.append(sp)
            return sp

        root = make(self._index)
        extra = sorted(set(params) - used)
        if extra:
            raise IndexSpecError(f"query parameter(s) {', '.join(extra)} do not apply to {self.label}; "
                                 f"it takes: {', '.join(sorted(used)) or 'none'}")
        return root, keep

    def _default_query_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(index: Any) -> None:
            index = faiss.downcast_index(index)
            if isinstance(index, faiss.IndexRefine):
                out["k_factor"] = index.k_factor
                walk(index.base_index)
            elif isinstance(index, faiss.IndexPreTransform):
                walk(index.index)
            elif isinstance(index, faiss.IndexIVF):
                out["nprobe"] = index.nprobe
            elif isinstance(index, faiss.IndexHNSW):
                out["efSearch"] = index.hnsw.efSearch
        if self._index is not None:
            walk(self._index)
        return out

    def save(self, path: str | Path) -> None:
        self._require_built()
        meta = {"library": self.library, "factory": self.factory, "metric": self.metric,
                "train_size": self.train_size, "seed": self.seed, "opq_niter": self.opq_niter,
                "ef_construction": self.ef_construction, "dim": self.dim}
        write_index_file(path, meta, faiss.serialize_index(self._index).tobytes())

    @classmethod
    def load(cls, path: str | Path) -> "FaissIndex":
        meta, payload = read_index_file(path)
        out = cls(meta["factory"], meta["metric"], meta["train_size"], meta["seed"], meta["opq_niter"],
                  meta.get("ef_construction"))
        out._index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        out.dim = meta["dim"]
        return out

    def size_bytes(self) -> int:
        self._require_built()
        return int(faiss.serialize_index(self._index).nbytes)

    def set_threads(self, n: int) -> None:
        self.threads = int(n)
        faiss.omp_set_num_threads(self.threads)

    @property
    def raw(self) -> Any:
        """The library's own index object (for bare-library comparisons)."""
        return self._index

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)


_TOO_FEW = re.compile(r"Number of training points \((\d+)\) should be at least as large as number of "
                      r"clusters \((\d+)\)")


def _check_training_size(index: Any, factory: str, n_train: int) -> None:
    """An IVF with more lists than training vectors cannot be clustered: say so with both numbers, before
    faiss's clustering raises a RuntimeError from C++."""
    try:
        nlist = faiss.extract_index_ivf(index).nlist
    except RuntimeError:  # not an IVF index
        return
    if nlist > n_train:
        raise IndexSpecError(f"faiss:{factory}: {nlist} IVF lists but only {n_train} vectors to train them; "
                             f"use at most {n_train} lists (about sqrt(n) = {max(1, int(n_train ** 0.5))} is usual)")
