"""A result cache in Redis, shared by every process searching the same index: the drop-in for the
searcher's in-process :class:`~workbench.hybrid.searcher.ResultCache` (same ``get``/``put``).

The searcher's cache key (normalised query, k, index version, fusion method and parameters, candidates) is
hashed (SHA-256 of its JSON) under ``namespace``; the value is the result's JSON. Expiry is Redis's own
(``SET ... PX ttl``), so it holds across processes; there is no LRU bound here, Redis's ``maxmemory-policy``
is that. A Redis that cannot be reached never fails a search: the lookup counts as a miss (``errors``).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import redis

from workbench.errors import WorkbenchError
from workbench.hybrid.searcher import SearchResult


class RedisResultCache:
    """``get``/``put`` of :class:`SearchResult` in Redis with a ttl of ``ttl_s`` seconds."""

    def __init__(self, client: redis.Redis, ttl_s: float = 300.0, namespace: str = "wb:search") -> None:
        if ttl_s <= 0:
            raise WorkbenchError(f"cache needs ttl_s > 0, got {ttl_s}")
        self.client, self.ttl_ms, self.namespace = client, max(1, int(ttl_s * 1000)), namespace
        self.hits = self.misses = self.errors = 0

    def key(self, key: Any) -> str:
        text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
        return f"{self.namespace}:{hashlib.sha256(text.encode()).hexdigest()}"

    def get(self, key: Any) -> SearchResult | None:
        try:
            raw = self.client.get(self.key(key))
        except (redis.ConnectionError, redis.TimeoutError):
            self.errors += 1
            raw = None
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        d = json.loads(raw)
        return SearchResult(d["query"], d["doc_ids"], d["scores"], d["method"])

    def put(self, key: Any, value: SearchResult) -> None:
        body = json.dumps({"query": value.query, "doc_ids": value.doc_ids, "scores": value.scores,
                           "method": value.method})
        try:
            self.client.set(self.key(key), body, px=self.ttl_ms)
        except (redis.ConnectionError, redis.TimeoutError):
            self.errors += 1


def hit_latency(cache: Any, n: int = 2000, k: int = 10) -> dict[str, float]:
    """p50/p99 (ms) of a cache hit (``get`` of a stored k-result entry), for any cache with get/put."""
    result = SearchResult("q", [f"doc{i}" for i in range(k)], [1.0 / (i + 1) for i in range(k)], "rrf")
    key = ("bench query", k, "bench", "rrf", "[]", 100)
    cache.put(key, result)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert cache.get(key) is not None
        lat.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "gets": n}
