"""Encoding throughput of the Embedder against a bare ``SentenceTransformer.encode`` on the same texts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

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


def compare_backends(texts: Sequence[str], backends: Sequence[str], repeats: int = 3, batch_size: int = 64,
                     cache_dir: str | Path | None = None) -> dict:
    """Best-of-``repeats`` texts/s of each backend (cache off) against a bare PyTorch ``encode`` on the same
    texts, passes interleaved; and each backend's min/mean cosine to the PyTorch vectors (all normalised).

    Exports are made (or reused, from ``cache_dir``) before timing, so no pass includes one."""
    texts = list(texts)
    model = load_model()
    embedders = {b: Embedder(batch_size=batch_size, use_cache=False, show_progress=False, backend=b,
                             cache_dir=cache_dir) for b in backends}
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first call allocates
    made = {}
    for b, e in embedders.items():
        e.encode(texts[:batch_size])                          # export or reuse, and warm up the session
        made[b] = e.export_made
    seconds: dict[str, list[float]] = {"torch-bare": [], **{b: [] for b in backends}}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        vectors["torch-bare"] = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False)
        seconds["torch-bare"].append(time.perf_counter() - t0)
        for b, e in embedders.items():
            t0 = time.perf_counter()
            vectors[b] = e.encode(texts)
            seconds[b].append(time.perf_counter() - t0)
    bare = len(texts) / min(seconds["torch-bare"])
    rows = []
    for b in backends:
        cos = np.einsum("nd,nd->n", vectors[b], vectors["torch-bare"])
        rate = len(texts) / min(seconds[b])
        rows.append({"backend": b, "variant": embedders[b].variant, "texts_per_s": rate, "speedup": rate / bare,
                     "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "export_made": made[b],
                     "seconds": seconds[b]})
    return {"n_texts": len(texts), "repeats": repeats, "batch_size": batch_size, "bare_texts_per_s": bare,
            "bare_seconds": seconds["torch-bare"], "backends": rows}
