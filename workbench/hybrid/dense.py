"""Dense retrieval over cached embeddings: exact inner-product search by default (the vector kernel's
``exact_topk``: best score first, ties to the earlier document), or any
:class:`workbench.index.base.VectorIndex` (faiss, hnswlib) built over the same vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from workbench.errors import DenseError
from workbench.hybrid.runs import Run
from workbench.vectors.kernel import check_dim, exact_topk

if TYPE_CHECKING:
    from workbench.data.beir import BeirDataset
    from workbench.embed import Embedder
    from workbench.index.base import VectorIndex

_QUERY_BATCH = 1024  # bounds the (queries x documents) score matrix of exact search


class DenseRetriever:
    """Top-k documents by the similarity of normalised embeddings (cosine).

    ``index`` (optional) is a built :class:`VectorIndex` over ``doc_vectors`` (ids = row positions); for an
    ``l2`` index the negated squared distance is used as the score. ``encoder`` (an ``Embedder``) turns
    query texts into vectors for :meth:`retrieve`; :meth:`retrieve_vectors` takes vectors directly.
    """

    def __init__(self, doc_vectors: np.ndarray, doc_ids: Sequence[str], index: "VectorIndex | None" = None,
                 encoder: "Embedder | None" = None) -> None:
        doc_vectors = np.ascontiguousarray(doc_vectors, dtype=np.float32)
        if doc_vectors.ndim != 2 or doc_vectors.shape[0] != len(doc_ids):
            raise DenseError(f"{doc_vectors.shape[0] if doc_vectors.ndim == 2 else doc_vectors.shape} document "
                             f"vectors for {len(doc_ids)} document ids")
        if index is not None and index.ntotal != len(doc_ids):
            raise DenseError(f"index holds {index.ntotal} vectors for {len(doc_ids)} document ids")
        self.doc_vectors, self.doc_ids, self.index, self.encoder = doc_vectors, list(doc_ids), index, encoder
        # Cosine of unit vectors is at least -1 (for theoretical-min-max); other metrics state no minimum.
        self.min_score = -1.0 if index is None or index.metric == "cosine" else None

    @classmethod
    def from_dataset(cls, ds: "BeirDataset", embedder: "Embedder | None" = None,
                     index: "VectorIndex | None" = None) -> tuple["DenseRetriever", np.ndarray]:
        """The retriever over the collection's cached document embeddings, and its query vectors."""
        from workbench.embed import Embedder, embed_dataset

        embedder = embedder or Embedder(normalize=True)
        doc_vecs, query_vecs = embed_dataset(ds, embedder)
        if index is not None and index.ntotal == 0:
            index.build(doc_vecs)
        return cls(doc_vecs, ds.doc_ids, index=index, encoder=embedder), query_vecs

    def retrieve_vectors(self, query_vectors: np.ndarray, k: int = 100, query_ids: Sequence[str] | None = None,
                         name: str = "dense") -> Run:
        q = np.ascontiguousarray(query_vectors, dtype=np.float32)
        if q.ndim != 2:
            raise DenseError(f"query vectors: expected a 2-D array (n, d), got shape {q.shape}")
        check_dim("query vectors", q, self.doc_vectors.shape[1])
        qids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(q))]
        if len(qids) != len(q):
            raise DenseError(f"{len(q)} query vectors but {len(qids)} query ids")
        k_eff = min(k, len(self.doc_ids))
        if self.index is None:
            sims, ids = exact_topk(self.doc_vectors, q, k_eff, "ip", batch=_QUERY_BATCH)
            scores = sims.astype(np.float64)
        else:
            dist, ids = self.index.search(q, k_eff)
            ids = np.asarray(ids, dtype=np.int64)
            scores = -np.asarray(dist, dtype=np.float64) if self.index.metric == "l2" else np.asarray(dist, np.float64)
            scores = np.where(ids >= 0, scores, np.nan)
        return Run(name, qids, ids, scores, self.doc_ids, self.min_score)

    def retrieve(self, queries: Sequence[str], k: int = 100, query_ids: Sequence[str] | None = None,
                 name: str = "dense") -> Run:
        """Encode ``queries`` with the encoder, then :meth:`retrieve_vectors`."""
        if self.encoder is None:
            raise DenseError("DenseRetriever has no encoder for query texts: pass encoder=Embedder(...)")
        if isinstance(queries, str):
            raise TypeError("retrieve takes a sequence of queries, not one string")
        return self.retrieve_vectors(self.encoder.encode(list(queries), desc="queries"), k, query_ids, name)
