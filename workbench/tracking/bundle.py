"""A retrieval bundle: what a registered retrieval model needs, in one folder logged as a run artifact.

``retrieval_index/`` holds ``index.bin`` (a ``workbench.index`` ``VectorIndex.save`` file, or a plain
``faiss.write_index`` file), ``doc_ids.json`` (row position -> document id) and ``retrieval.json`` (index
class, metric, dimension, query parameters, embedding model identity, dataset name and digest, the index
file's sha256). A run that logs this folder (``log_run(..., artifacts=[bundle_dir])``) can be registered.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from workbench.errors import DatasetError
from workbench.io import atomic_write_json, sha256_file
from workbench.vectors.kernel import normalize

BUNDLE_DIR = "retrieval_index"
RAW_FAISS = "faiss"  # index_class of a plain faiss.write_index file


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

        from workbench.io import atomic_write_bytes

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


def load_bundle(folder: str | Path) -> RetrievalBundle:
    """Load a bundle written by :func:`write_retrieval_bundle`, checking the index file's sha256."""
    folder = Path(folder)
    config_path = folder / "retrieval.json"
    if not config_path.is_file():
        raise DatasetError(f"{folder} is not a retrieval bundle: {config_path.name} is missing")
    config = json.loads(config_path.read_text())
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
