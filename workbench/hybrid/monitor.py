"""Search-quality monitoring over a sliding window of recent searches: latency percentiles, the share of
searches with no result, with a low top score, degraded (one retriever failed), served from cache, failed."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Event:
    latency_s: float
    n_results: int
    top_score: float | None
    degraded: bool
    cached: bool
    failed: bool


class QualityMonitor:
    """Thread-safe counters over the last ``window`` searches.

    ``low_score_threshold`` is in the fused score's units (it depends on the fusion method: the RRF score
    of a document ranked first by both lists with k=60 is 2/61); None leaves the low-score rate out.
    """

    def __init__(self, low_score_threshold: float | None = None, window: int = 10_000) -> None:
        self.low_score_threshold = low_score_threshold
        self._events: deque[_Event] = deque(maxlen=window)
        self._lock = threading.Lock()

    def record(self, latency_s: float, n_results: int, top_score: float | None, degraded: bool = False,
               cached: bool = False) -> None:
        with self._lock:
            self._events.append(_Event(latency_s, n_results, top_score, degraded, cached, False))

    def record_failure(self, latency_s: float) -> None:
        """A search that returned nothing because every retriever failed."""
        with self._lock:
            self._events.append(_Event(latency_s, 0, None, False, False, True))

    def summary(self) -> dict[str, float | int | None]:
        """Counts, latency percentiles (ms) and rates over the window; rates are over served searches."""
        with self._lock:
            events = list(self._events)
        served = [e for e in events if not e.failed]
        lat = np.array([e.latency_s for e in events]) * 1000.0
        out: dict[str, float | int | None] = {
            "searches": len(events), "failures": len(events) - len(served),
            "failure_rate": (len(events) - len(served)) / len(events) if events else 0.0,
        }
        for p in (50, 95, 99):
            out[f"latency_p{p}_ms"] = float(np.percentile(lat, p)) if len(lat) else None
        for label, cached in (("cache_hit", True), ("cache_miss", False)):
            part = np.array([e.latency_s for e in served if e.cached == cached]) * 1000.0
            for p in (50, 99):
                out[f"{label}_latency_p{p}_ms"] = float(np.percentile(part, p)) if len(part) else None
        n = len(served)
        out["empty_rate"] = sum(e.n_results == 0 for e in served) / n if n else 0.0
        out["degraded_rate"] = sum(e.degraded for e in served) / n if n else 0.0
        out["cache_hit_rate"] = sum(e.cached for e in served) / n if n else 0.0
        if self.low_score_threshold is None:
            out["low_score_rate"] = None
        else:
            low = sum(e.n_results == 0 or (e.top_score is not None and e.top_score < self.low_score_threshold)
                      for e in served)
            out["low_score_rate"] = low / n if n else 0.0
        return out
