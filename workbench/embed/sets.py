"""What a DATA argument (``workbench ann DATA``, ``workbench filtered DATA``) names, as a vector set.

- ``sentences``: the MiniLM sentence set of the classic IR collections (texts from
  ``workbench.data.sentences``, embedded here through the cache; normalised, 384-d, cosine: ~60 s on 2
  cores the first time, then cache reads);
- ``synthetic:n=5000,dim=64,queries=200,clusters=50,seed=0,metric=cosine``: Gaussian clusters;
- a file ``.hdf5``/``.h5`` (ann-benchmarks), ``.npz`` (``base``, ``queries``, optional ``neighbors``),
  ``.fvecs``, ``.bvecs``;
- otherwise a dataset name or BEIR folder: documents are the base and queries the queries, both
  embedded through the cache (cosine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from workbench.data.registry import load_dataset
from workbench.data.sentences import COLLECTIONS, N_QUERIES, sentence_split
from workbench.embed.encoder import Embedder, embed_dataset
from workbench.errors import DatasetError
from workbench.vectors.formats import VectorSet, load_vectors, synthetic_clusters

VECTOR_SUFFIXES = (".hdf5", ".h5", ".npz", ".fvecs", ".bvecs")
_SYNTHETIC_DEFAULTS = {"n": 5000, "dim": 64, "queries": 200, "clusters": 50, "seed": 0, "metric": "cosine"}


def parse_synthetic(text: str) -> dict:
    """The options of a ``synthetic:...`` DATA string, over the defaults."""
    opts = dict(_SYNTHETIC_DEFAULTS)
    body = text.partition(":")[2]
    for part in filter(None, body.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in opts:
            raise DatasetError(f"DATA {text!r}: expected synthetic:{','.join(f'{k}=..' for k in opts)}, got {part!r}")
        try:
            opts[key] = value if key == "metric" else int(value)
        except ValueError:
            raise DatasetError(f"DATA {text!r}: {key} must be an integer, got {value!r}") from None
    return opts


def sentence_vectors(n_queries: int = N_QUERIES, seed: int = 0, collections: Sequence[str] = COLLECTIONS,
                     embedder: Embedder | None = None, limit: int | None = None) -> VectorSet:
    """The embedded sentence set: ``n_queries`` held-out segments as queries, the rest as base (cosine).

    ``limit`` keeps a seeded random subset of that many segments first (quick runs)."""
    texts, held = sentence_split(n_queries, seed, collections, limit)
    embedder = embedder or Embedder(normalize=True)
    vectors = embedder.encode(texts, desc="sentence set")  # one call: the cache sees the whole set at once
    name = "ir-sentences" if limit is None else f"ir-sentences-{limit}"
    return VectorSet(name, vectors[~held], vectors[held], "cosine")


def load_vector_set(data: str, progress: bool = True) -> tuple[VectorSet, str]:
    """``(vector set, source)`` of ``data`` (see the module docstring); ``progress`` shows embedding bars.

    ``source`` says where the vectors came from (a file, a collection's folder, the DATA string)."""
    if data == "sentences":
        vs = sentence_vectors(embedder=Embedder(normalize=True, show_progress=progress))
        return vs, "+".join(COLLECTIONS) + " sentences"
    if data.startswith("synthetic"):
        o = parse_synthetic(data)
        vs = synthetic_clusters(n=o["n"], dim=o["dim"], n_queries=o["queries"], n_clusters=o["clusters"],
                                seed=o["seed"], metric=o["metric"])
        return vs, data
    path = Path(data)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return load_vectors(path), str(path)
    ds = load_dataset(data)
    docs, queries = embed_dataset(ds, Embedder(normalize=True, show_progress=progress))
    return VectorSet(ds.name, docs, queries, "cosine"), str(ds.path)
