"""Encoding throughput of the Embedder against a bare ``SentenceTransformer.encode`` on the same texts."""

from __future__ import annotations

import time
from typing import Sequence

from workbench.embed.encoder import Embedder
from workbench.embed.model import load_model


def compare_throughput(texts: Sequence[str], repeats: int = 3, batch_size: int = 64) -> dict:
    """Best-of-``repeats`` texts/s of both paths; the wrapper runs with its cache off so it encodes everything.

    The two are interleaved so that drifting machine load affects both alike.
    """
    texts = list(texts)
    model = load_model()
    wrapper = Embedder(batch_size=batch_size, use_cache=False, show_progress=False)
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first call allocates
    bare, wrapped = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wrapper.encode(texts)
        wrapped.append(time.perf_counter() - t0)
    b, w = len(texts) / min(bare), len(texts) / min(wrapped)
    return {"n_texts": len(texts), "repeats": repeats, "batch_size": batch_size,
            "bare_texts_per_s": b, "wrapper_texts_per_s": w, "relative": w / b - 1.0,
            "bare_seconds": bare, "wrapper_seconds": wrapped}
