"""What ``workbench ann DATA`` accepts, turned into a ``BenchSet``.

- ``sentences``: the MiniLM sentence set of the classic IR collections (``workbench.data.sentences``);
- ``synthetic:n=5000,dim=64,queries=200,clusters=50,seed=0,metric=cosine``: Gaussian clusters;
- a file ``.hdf5``/``.h5`` (ann-benchmarks), ``.npz`` (``base``, ``queries``, optional ``neighbors``),
  ``.fvecs``;
- otherwise a dataset name or BEIR folder: documents are the base and queries the queries, both
  embedded through the cache (cosine).
"""

from __future__ import annotations

from pathlib import Path

from workbench.bench.harness import BenchSet
from workbench.errors import DatasetError

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
        opts[key] = value if key == "metric" else int(value)
    return opts


def load_bench_data(data: str, progress: bool = True) -> BenchSet:
    """Resolve ``data`` (see the module docstring), with exact neighbours."""
    if data == "sentences":
        from workbench.data.sentences import sentence_vectors

        vs = sentence_vectors()
        return BenchSet.from_vector_set(vs, source="cranfield+cisi+medline sentences", progress=progress)
    if data.startswith("synthetic"):
        from workbench.data.vectors import synthetic_clusters

        o = parse_synthetic(data)
        vs = synthetic_clusters(n=o["n"], dim=o["dim"], n_queries=o["queries"], n_clusters=o["clusters"],
                                seed=o["seed"], metric=o["metric"])
        return BenchSet.from_vector_set(vs, source=data, progress=progress)
    path = Path(data)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        from workbench.data.vectors import load_vectors

        return BenchSet.from_vector_set(load_vectors(path), source=str(path), progress=progress)
    from workbench.data import load_dataset
    from workbench.embed import embed_dataset

    ds = load_dataset(data)
    docs, queries = embed_dataset(ds)
    return BenchSet.from_vectors(ds.name, docs, queries, "cosine", source=str(ds.path), progress=progress)
