"""A retrieval bundle: what a registered retrieval model needs, in one folder logged as a run artifact.

``retrieval_index/`` holds ``index.bin`` (a ``workbench.index`` ``VectorIndex.save`` file, or a plain
``faiss.write_index`` file), ``doc_ids.json`` (row position -> document id) and ``retrieval.json`` (index
class, metric, dimension, query parameters, embedding model identity, dataset name and digest, the index
file's sha256). A run that logs this folder (``log_run(..., artifacts=[bundle_dir])``) can be registered.

A *hybrid* bundle (``retrieval.json`` has ``"kind": "hybrid"``, written by :func:`write_hybrid_bundle`) holds
instead ``bm25/`` (a ``BM25Retriever.save`` folder), ``dense_vectors.npy`` (the document embeddings the
dense side searches exactly, by inner product) and the fusion method with its parameters; every file's
sha256 is recorded and checked on load. :class:`HybridBundle` retrieves and fuses with the same code as the
evaluation (``workbench.hybrid``), so the registered model ranks as the run did.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from workbench.errors import DatasetError
from workbench.hybrid.dense import DenseRetriever
from workbench.hybrid.fusion import fuse
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.runs import Run
from workbench.io import atomic_write_bytes, atomic_write_json, sha256_file
from workbench.vectors.kernel import normalize

BUNDLE_DIR = "retrieval_index"
RAW_FAISS = "faiss"  # index_class of a plain faiss.write_index file
HYBRID = "hybrid"    # kind (and index_class) of a BM25 + dense + fusion bundle


def write_retrieval_bundle(out_dir: str | Path, index: Any, doc_ids: Sequence[str], *, metric: str,
                           embedding_model: str | None, normalize: bool = True,
                           query_params: Mapping[str, Any] | None = None, k: int = 10,
                           dataset: Mapping[str, str] | None = None) -> Path:
    """Write ``out_dir/retrieval_index/`` for ``index`` (a ``VectorIndex`` or a faiss index); returns it.

    ``embedding_model`` is ``Embedder.model_id`` (None if queries will always come as vectors); ``metric``
    is ``cosine``, ``ip`` or ``l2``; ``query_params`` (``efSearch``, ``nprobe``...) are applied on load.
    """
    folder = Path(out_dir) / BUNDLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.bin"
    if hasattr(index, "save") and hasattr(index, "ntotal") and not _is_faiss(index):
        index.save(index_path)
        index_class = f"{type(index).__module__}:{type(index).__qualname__}"
        ntotal, dim = int(index.ntotal), int(index.dim)
    elif _is_faiss(index):
        import faiss

        atomic_write_bytes(index_path, faiss.serialize_index(index).tobytes())
        index_class, ntotal, dim = RAW_FAISS, int(index.ntotal), int(index.d)
    else:
        raise DatasetError(f"cannot save an index of type {type(index).__name__}: expected a workbench "
                           f"VectorIndex or a faiss index")
    if len(doc_ids) != ntotal:
        raise DatasetError(f"{len(doc_ids)} document ids for an index of {ntotal} vectors")
    atomic_write_json(folder / "doc_ids.json", [str(d) for d in doc_ids])
    config = {"index_class": index_class, "metric": metric, "dim": dim, "ntotal": ntotal,
              "query_params": dict(query_params or {}), "k": int(k), "embedding_model": embedding_model,
              "normalize": bool(normalize), "dataset": dict(dataset or {}),
              "index_sha256": sha256_file(index_path)}
    atomic_write_json(folder / "retrieval.json", config)
    return folder


@dataclass
class RetrievalBundle:
    """A loaded bundle: ``search(vectors, k) -> (scores, rows)``; rows index ``doc_ids`` (-1 = none)."""

    path: Path
    config: dict[str, Any]
    doc_ids: list[str]
    index: Any

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), len(self.doc_ids))
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.config["index_class"] == RAW_FAISS and self.config["metric"] == "cosine":
            x = normalize(x, "query vectors")  # a VectorIndex normalises itself, a raw faiss index does not
        return self.index.search(x, k)


def load_bundle(folder: str | Path) -> "RetrievalBundle | HybridBundle":
    """Load a bundle written by :func:`write_retrieval_bundle` or :func:`write_hybrid_bundle`, checking
    the sha256 of its files."""
    folder = Path(folder)
    config_path = folder / "retrieval.json"
    if not config_path.is_file():
        raise DatasetError(f"{folder} is not a retrieval bundle: {config_path.name} is missing")
    config = json.loads(config_path.read_text())
    if config.get("kind") == HYBRID:
        return _load_hybrid(folder, config)
    index_path = folder / "index.bin"
    digest = sha256_file(index_path)
    if digest != config["index_sha256"]:
        raise DatasetError(f"{index_path}: sha256 {digest[:12]}... does not match the bundle's "
                           f"{config['index_sha256'][:12]}... (file changed or truncated)")
    doc_ids = json.loads((folder / "doc_ids.json").read_text())
    if config["index_class"] == RAW_FAISS:
        import faiss

        index = faiss.read_index(str(index_path))
        space = faiss.ParameterSpace()
        for name, value in config["query_params"].items():
            space.set_index_parameter(index, name, value)
    else:
        module, _, cls = config["index_class"].partition(":")
        index = getattr(importlib.import_module(module), cls).load(index_path)
        if config["query_params"]:
            index.set_query_params(**config["query_params"])
    return RetrievalBundle(path=folder, config=config, doc_ids=doc_ids, index=index)


def _is_faiss(index: Any) -> bool:
    return type(index).__module__.startswith("faiss")


def write_hybrid_bundle(out_dir: str | Path, bm25: BM25Retriever, doc_vectors: np.ndarray, *,
                        embedding_model: str, fusion: Mapping[str, Any], depth: int, k: int = 10,
                        normalize: bool = True, embedding_backend: str = "torch", dataset: Mapping[str, str] | None = None,
                        figures: Mapping[str, Any] | None = None, chosen_by: str = "") -> Path:
    """Write ``out_dir/retrieval_index/`` for BM25 + exact dense retrieval fused by ``fusion``
    (``{"method": ..., "params": {...}}``, as ``workbench.hybrid.fusion.fuse`` takes them), each list cut
    at ``depth`` before fusing; ``figures`` (e.g. nDCG@10 of this configuration) and ``chosen_by`` (how the
    fusion was chosen, a sentence) go into the config for the model card. ``embedding_backend`` is the
    ``Embedder`` backend the document vectors came from: served queries are encoded by the same one."""
    folder = Path(out_dir) / BUNDLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(doc_vectors, dtype=np.float32)
    if len(vectors) != len(bm25.doc_ids):
        raise DatasetError(f"{len(vectors)} document vectors for a BM25 index of {len(bm25.doc_ids)} documents")
    bm25.save(folder / "bm25")
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    atomic_write_bytes(folder / "dense_vectors.npy", buf.getvalue())
    atomic_write_json(folder / "doc_ids.json", [str(d) for d in bm25.doc_ids])
    files = _digests(folder)
    config = {"kind": HYBRID, "index_class": HYBRID, "metric": "fused score", "dim": int(vectors.shape[1]),
              "ntotal": len(vectors), "k": int(k), "depth": int(depth), "embedding_model": embedding_model,
              "embedding_backend": embedding_backend, "normalize": bool(normalize), "bm25": bm25.settings,
              "dense": {"search": "exact inner product", "min_score": -1.0},
              "fusion": {"method": fusion["method"], "params": dict(fusion.get("params") or {})},
              "chosen_by": chosen_by,
              "query_params": {}, "dataset": dict(dataset or {}), "figures": dict(figures or {}),
              "files": files, "index_sha256": _combined(files)}
    atomic_write_json(folder / "retrieval.json", config)
    return folder


@dataclass
class HybridBundle:
    """A loaded hybrid bundle: ``retrieve(texts, vectors) -> Run`` fuses BM25 and dense as the run did."""

    path: Path
    config: dict[str, Any]
    doc_ids: list[str]
    bm25: BM25Retriever
    dense: DenseRetriever

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def retrieve(self, texts: Sequence[str], vectors: np.ndarray) -> Run:
        """BM25 and dense top-``depth`` of each query, fused and cut at ``depth`` (as the evaluation did)."""
        depth, fusion = int(self.config["depth"]), self.config["fusion"]
        qids = [str(i) for i in range(len(texts))]
        pair = [self.bm25.retrieve(list(texts), depth, qids, name="bm25"),
                self.dense.retrieve_vectors(vectors, depth, qids, name="dense")]
        return fuse(pair, fusion["method"], depth, name="fused", **fusion["params"])


def _load_hybrid(folder: Path, config: dict[str, Any]) -> HybridBundle:
    found = _digests(folder)
    for name, digest in config["files"].items():
        if found.get(name) != digest:
            raise DatasetError(f"{folder / name}: sha256 {str(found.get(name, 'missing'))[:12]}... does not match "
                               f"the bundle's {digest[:12]}... (file changed, truncated or missing)")
    doc_ids = json.loads((folder / "doc_ids.json").read_text())
    vectors = np.load(folder / "dense_vectors.npy", allow_pickle=False)
    return HybridBundle(folder, config, doc_ids, BM25Retriever.load(folder / "bm25"), DenseRetriever(vectors, doc_ids))


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but ``retrieval.json``, by relative path."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "retrieval.json"}


def _combined(files: Mapping[str, str]) -> str:
    """One digest naming the whole bundle (the lineage tag), from the sorted per-file digests."""
    return hashlib.sha256("".join(f"{n} {d}\n" for n, d in sorted(files.items())).encode()).hexdigest()
