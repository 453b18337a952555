"""The texts of the sentence set for ANN benchmarks: short segments of the classic IR collections.

Each document's ``title. text`` of Cranfield, CISI and Medline is split after sentence and clause
punctuation (``. ! ? ; : ,`` followed by white space), white space is collapsed, and exact duplicates are
dropped: about 45.7K segments of a few words to a sentence. A seeded random 1,000 are held out as
queries (ann-benchmarks holds out test points the same way); the rest are the base. This module builds
the texts only; ``workbench.embed.sets.sentence_vectors`` embeds them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from workbench.data.registry import load_dataset
from workbench.errors import DatasetError

COLLECTIONS = ("cranfield", "cisi", "medline")
N_QUERIES = 1000
_SPLIT = re.compile(r"[.!?;:,]\s+")


def split_segments(text: str) -> list[str]:
    """``text`` cut after sentence and clause punctuation, white space collapsed, empty parts dropped."""
    parts = (" ".join(p.strip(" .").split()) for p in _SPLIT.split(text))
    return [p for p in parts if p]


def sentence_texts(collections: Sequence[str] = COLLECTIONS) -> tuple[list[str], str]:
    """Deduplicated segments of the collections' documents, in document order, and a digest of the sources."""
    seen: dict[str, None] = {}
    digests = []
    for name in collections:
        ds = load_dataset(name)
        digests.append(f"{name}:{ds.digest}")
        for title, text in zip(ds.corpus["title"], ds.corpus["text"]):
            for s in split_segments(f"{title}. {text}" if title else text):
                seen.setdefault(s, None)
    return list(seen), hashlib.sha256("|".join(digests).encode()).hexdigest()


def sentence_split(n_queries: int = N_QUERIES, seed: int = 0, collections: Sequence[str] = COLLECTIONS,
                   limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """The segments and a boolean mask of the ``n_queries`` held out as queries (seeded).

    ``limit`` keeps a seeded random subset of that many segments first (quick runs)."""
    texts, _ = sentence_texts(collections)
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(texts):
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), limit, replace=False))]
    if n_queries >= len(texts):
        raise DatasetError(f"sentence set: {n_queries} queries requested but only {len(texts)} segments")
    held = np.zeros(len(texts), dtype=bool)
    held[rng.choice(len(texts), n_queries, replace=False)] = True
    return texts, held
