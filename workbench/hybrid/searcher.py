"""``HybridSearcher``: one query through several retrievers in parallel, fused, with the production
patterns around it: an LRU result cache with a time-to-live, a timeout per retriever, graceful
degradation, and a quality monitor.

Degradation: if a retriever raises or misses its timeout, the search returns the remaining retrievers'
results (fused if two or more remain, else the survivor's own ranking and scores), flagged
``degraded`` with the reason per failed retriever. If every retriever fails it raises
:class:`SearchError` naming each failure; it never returns placeholder results. Degraded results are not
cached, so the next search tries the failed retriever again. A timed-out retriever's thread cannot be
killed in Python: it finishes in the background and its result is discarded.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from workbench.errors import QueryError, SearchError, WorkbenchError
from workbench.hybrid.fusion import METHODS, fuse
from workbench.hybrid.monitor import QualityMonitor
from workbench.hybrid.runs import Run


class Retriever(Protocol):
    def retrieve(self, queries: Sequence[str], k: int = ..., query_ids: Sequence[str] | None = ...,
                 name: str = ...) -> Run: ...


@dataclass(frozen=True)
class SearchResult:
    query: str
    doc_ids: list[str]
    scores: list[float]
    method: str  # the fusion method, or the single retriever that answered
    degraded: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # retriever -> what went wrong
    cached: bool = False
    latency_s: float = 0.0


class ResultCache:
    """Least-recently-used cache whose entries expire ``ttl_s`` seconds after they were stored."""

    def __init__(self, maxsize: int = 1024, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1 or ttl_s <= 0:
            raise WorkbenchError(f"cache needs maxsize >= 1 and ttl_s > 0, got {maxsize} and {ttl_s}")
        self.maxsize, self.ttl_s, self.clock = maxsize, ttl_s, clock
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._data.get(key)
            if item is None or self.clock() - item[0] >= self.ttl_s:
                if item is not None:
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = (self.clock(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class HybridSearcher:
    """Search ``retrievers`` (name -> object with ``retrieve(queries, k)`` returning a :class:`Run`) in
    parallel, each fetching ``candidates`` results within its timeout, and fuse them with ``fusion``.

    ``timeout_s`` is one number for all retrievers or a mapping per name. Results are cached per
    (whitespace-normalised query, k, ``index_version``, fusion method and parameters, candidates) for
    ``cache_ttl_s`` seconds, at most ``cache_size`` of them (0: no cache); ``cache`` replaces that in-process
    cache by any object with the same ``get``/``put``, e.g. ``cache_redis.RedisResultCache`` shared by processes.
    """

    def __init__(self, retrievers: Mapping[str, Retriever], fusion: str = "rrf",
                 fusion_params: Mapping[str, Any] | None = None, k: int = 10, candidates: int = 100,
                 timeout_s: float | Mapping[str, float] = 1.0, cache_size: int = 1024, cache_ttl_s: float = 300.0,
                 monitor: QualityMonitor | None = None, cache: Any = None, index_version: str = "") -> None:
        if not retrievers:
            raise WorkbenchError("HybridSearcher needs at least one retriever")
        if fusion not in METHODS:
            raise WorkbenchError(f"unknown fusion method {fusion!r}; choose one of {', '.join(METHODS)}")
        self.retrievers = dict(retrievers)
        timeouts = timeout_s if isinstance(timeout_s, Mapping) else {n: timeout_s for n in self.retrievers}
        missing = set(self.retrievers) - set(timeouts)
        if missing:
            raise WorkbenchError(f"no timeout given for retrievers {sorted(missing)}")
        self.timeouts = {n: float(timeouts[n]) for n in self.retrievers}
        self.fusion, self.fusion_params = fusion, dict(fusion_params or {})
        self.k, self.candidates = k, candidates
        self.cache = cache if cache is not None else ResultCache(cache_size, cache_ttl_s) if cache_size else None
        self.index_version = index_version
        self.monitor = monitor or QualityMonitor()
        # Spare workers so that a retriever stuck past its timeout does not block the next searches.
        self._pool = ThreadPoolExecutor(max_workers=4 * len(self.retrievers), thread_name_prefix="retriever")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "HybridSearcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, query: str, k: int | None = None) -> SearchResult:
        """Top ``k`` fused results of ``query`` (see the module docstring for failures)."""
        if not isinstance(query, str):
            raise QueryError(f"query must be a string, got {type(query).__name__}")
        text = query.strip()
        if not text:
            raise QueryError("empty query: nothing to search for")
        k = k or self.k
        start = time.perf_counter()
        # queries differing only in whitespace share a cache entry; another index or fusion does not
        key = (" ".join(text.split()), k, self.index_version, self.fusion, repr(sorted(self.fusion_params.items())),
               self.candidates)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            latency = time.perf_counter() - start
            self.monitor.record(latency, len(hit.doc_ids), hit.scores[0] if hit.scores else None, cached=True)
            return SearchResult(hit.query, hit.doc_ids, hit.scores, hit.method, cached=True, latency_s=latency)

        futures = {n: self._pool.submit(r.retrieve, [text], max(k, self.candidates), ["q"], n)
                   for n, r in self.retrievers.items()}
        runs: dict[str, Run] = {}
        failures: dict[str, str] = {}
        for name, fut in futures.items():
            remaining = self.timeouts[name] - (time.perf_counter() - start)
            try:
                run = fut.result(timeout=max(remaining, 0.0))
                if not isinstance(run, Run) or run.query_ids != ["q"]:
                    raise TypeError(f"returned {type(run).__name__}, not a one-query Run")
                runs[name] = run
            except FutureTimeout:
                fut.cancel()
                failures[name] = f"timed out after {self.timeouts[name]:g} s"
            except Exception as exc:  # any retriever fault degrades the search instead of failing it
                failures[name] = f"{type(exc).__name__}: {exc}"
        if not runs:
            self.monitor.record_failure(time.perf_counter() - start)
            detail = "; ".join(f"{n}: {why}" for n, why in failures.items())
            raise SearchError(f"all {len(failures)} retrievers failed for query {text!r}: {detail}")

        if len(runs) == 1:
            method, run = next(iter(runs.items()))
        else:
            method = self.fusion
            run = fuse(list(runs.values()), self.fusion, k, **self.fusion_params)
        n = int(run.valid[0].sum())
        n = min(n, k)
        doc_ids = [run.docs[d] for d in run.doc_ids[0, :n]]
        scores = [float(s) for s in run.scores[0, :n]]
        result = SearchResult(text, doc_ids, scores, method, degraded=bool(failures), failures=failures,
                              latency_s=time.perf_counter() - start)
        if self.cache is not None and not failures:
            self.cache.put(key, result)
        self.monitor.record(result.latency_s, n, scores[0] if scores else None, degraded=bool(failures))
        return result
