"""The registered retrieval model: an MLflow pyfunc that embeds queries and searches a saved index.

Input: a DataFrame with a ``query`` text column (embedded with ``workbench.embed.Embedder``, which must be
the model the index was built with) or a ``vector`` column holding one vector per row. Output: one row per
input row with ``ids`` (document ids, best first) and ``scores`` (the index's similarity or distance).
``params={"k": 5}`` sets the number of results. A hybrid bundle (BM25 + dense + fusion) needs the
``query`` column (BM25 reads the text); its scores are the fused scores.

This module imports mlflow at the top; it is only imported to register or load a model. The model is
logged "from code" (``retriever_code.py``), not pickled; the loading environment needs ``workbench``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from workbench.errors import DimensionError, WorkbenchError
from workbench.tracking.bundle import HybridBundle, RetrievalBundle, load_bundle


class RetrievalModel(mlflow.pyfunc.PythonModel):
    """Search a retrieval bundle (index file + document ids + embedding model identity)."""

    def load_context(self, context: Any) -> None:
        self.bundle: RetrievalBundle | HybridBundle = load_bundle(Path(context.artifacts["bundle"]))
        self._embedder = None

    # mlflow reads predict's type hints: pd.DataFrame means "no schema from hints" (the signature has it).
    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k") or self.bundle.config.get("k", 10))
        frame = pd.DataFrame(model_input)
        if isinstance(self.bundle, HybridBundle):
            return self._hybrid(frame, k)
        vectors = self._vectors(frame)
        scores, rows = self.bundle.search(vectors, k)
        ids = [[self.bundle.doc_ids[r] for r in row if r >= 0] for row in rows]
        return pd.DataFrame({"ids": ids,
                             "scores": [[float(s) for s, r in zip(srow, rrow) if r >= 0]
                                        for srow, rrow in zip(scores, rows)]},
                            index=frame.index)

    def _hybrid(self, frame: pd.DataFrame, k: int) -> pd.DataFrame:
        if "query" not in frame or not frame["query"].notna().all():
            raise WorkbenchError(f"a hybrid retrieval model needs a 'query' text column with a value in every row "
                                 f"(BM25 reads the text); got columns {list(frame.columns)}")
        texts = [str(q) for q in frame["query"]]
        run = self.bundle.retrieve(texts, self._embed(texts))
        ids, scores = run.doc_ids[:, :k], run.scores[:, :k]
        return pd.DataFrame({"ids": [[self.bundle.doc_ids[r] for r in row if r >= 0] for row in ids],
                             "scores": [[float(s) for s, r in zip(srow, rrow) if r >= 0]
                                        for srow, rrow in zip(scores, ids)]},
                            index=frame.index)

    def _vectors(self, frame: pd.DataFrame) -> np.ndarray:
        has_query = "query" in frame and frame["query"].notna().all()
        has_vector = "vector" in frame and frame["vector"].notna().all()
        if has_query:
            return self._embed([str(q) for q in frame["query"]])
        if has_vector:
            vectors = np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]])
            if vectors.shape[1] != self.bundle.dim:
                raise DimensionError(f"query vectors have dimension {vectors.shape[1]}, the index has "
                                     f"dimension {self.bundle.dim}")
            return vectors
        raise WorkbenchError(f"model input needs a 'query' text column or a 'vector' column with a value in "
                             f"every row; got columns {list(frame.columns)}")

    def _embed(self, texts: list[str]) -> np.ndarray:
        from workbench.embed import Embedder

        if self._embedder is None:
            # queries are encoded by the backend the document vectors came from (int8 vectors differ)
            self._embedder = Embedder(normalize=self.bundle.config.get("normalize", True), show_progress=False,
                                      backend=self.bundle.config.get("embedding_backend", "torch"))
            wanted = self.bundle.config.get("embedding_model")
            if wanted and self._embedder.model_id != wanted:
                raise WorkbenchError(f"the index was built with embedding model {wanted!r}, but this environment "
                                     f"loads {self._embedder.model_id!r}: query vectors would not match")
        return self._embedder.encode(texts)
