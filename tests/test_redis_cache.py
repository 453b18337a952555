"""The hybrid searcher's result cache in Redis: shared by processes, keyed by query, k, index version and
fusion settings, expired by Redis's ttl, reported by the monitor; an unreachable Redis degrades to misses."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from workbench.hybrid.cache_redis import RedisResultCache
from workbench.hybrid.runs import Run
from workbench.hybrid.searcher import HybridSearcher
from workbench.services.redis import RedisServer


class Counting:
    def __init__(self, docs, order=None):
        self.docs, self.calls = docs, 0
        self.order = list(range(len(docs))) if order is None else order

    def retrieve(self, queries, k=10, query_ids=None, name="r"):
        self.calls += 1
        n = len(self.docs)
        return Run(name, list(query_ids), np.array(self.order)[None, :], np.linspace(1, 0, n)[None, :], self.docs)


def searcher(socket: str, version: str = "v1", fusion: str = "rrf") -> tuple[HybridSearcher, dict]:
    import redis

    rs = {"a": Counting(["d1", "d2", "d3"]), "b": Counting(["d1", "d2", "d3"], [2, 1, 0])}
    cache = RedisResultCache(redis.Redis(unix_socket_path=socket), ttl_s=60)
    return HybridSearcher(rs, fusion=fusion, k=3, cache=cache, index_version=version), rs


def _other_process(socket: str, queue) -> None:
    s, rs = searcher(socket)
    r = s.search("  shared   query ")
    queue.put((r.cached, r.doc_ids, rs["a"].calls + rs["b"].calls, s.monitor.summary()["cache_hit_rate"]))
    s.close()


@pytest.fixture(scope="module")
def server():
    with RedisServer() as s:
        yield s


def test_cache_is_shared_by_processes(server):
    s, rs = searcher(str(server.socket))
    first = s.search("shared query")
    assert not first.cached and rs["a"].calls == 1
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_other_process, args=(str(server.socket), q))
    p.start()
    cached, ids, calls, rate = q.get(timeout=120)
    p.join(60)
    assert cached and ids == first.doc_ids and calls == 0 and rate == 1.0
    again = s.search("shared query")
    assert again.cached and again.scores == first.scores
    summary = s.monitor.summary()
    assert summary["cache_hit_rate"] == 0.5 and summary["cache_hit_latency_p50_ms"] is not None
    assert summary["cache_miss_latency_p50_ms"] is not None
    s.close()


def test_key_holds_index_version_and_fusion_and_ttl_is_redis_own(server):
    s1, _ = searcher(str(server.socket), "v1")
    s2, r2 = searcher(str(server.socket), "v2")
    s3, r3 = searcher(str(server.socket), "v1", fusion="combsum")
    s1.search("q")
    assert not s2.search("q").cached and r2["a"].calls == 1     # another index version
    assert not s3.search("q").cached and r3["a"].calls == 1     # other fusion settings
    client = s1.cache.client
    keys = list(client.scan_iter(match="wb:search:*"))
    assert len(keys) >= 3 and all(0 < client.pttl(k) <= 60_000 for k in keys)
    for s in (s1, s2, s3):
        s.close()


def test_unreachable_redis_is_a_miss_not_a_failure(tmp_path):
    import redis

    rs = {"a": Counting(["d1", "d2"])}
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no client retries: their back-off would eat the retriever's timeout, which counts from the lookup
    client = redis.Redis(unix_socket_path=str(tmp_path / "none.sock"), retry=Retry(NoBackoff(), 0))
    cache = RedisResultCache(client, ttl_s=5)
    with HybridSearcher(rs, k=2, cache=cache) as s:
        assert s.search("q").doc_ids == ["d1", "d2"] and s.search("q").doc_ids == ["d1", "d2"]
    assert rs["a"].calls == 2 and cache.errors == 4 and cache.hits == 0
