"""Hybrid search: BM25 and dense retrieval, rank fusion, IR evaluation on relevance judgements, and the
production searcher (cache, timeouts, degradation, monitoring).

Heavy libraries (bm25s, pytrec_eval, scipy, ranx, matplotlib) are imported inside the functions that use them.
"""

from workbench.errors import QueryError, RunError, SearchError
from workbench.hybrid.dense import DenseRetriever
from workbench.hybrid.evaluate import evaluate, per_query
from workbench.hybrid.fusion import METHODS, fuse
from workbench.hybrid.lexical import BM25Retriever
from workbench.hybrid.monitor import QualityMonitor
from workbench.hybrid.runs import Run, read_trec, write_trec
from workbench.hybrid.searcher import HybridSearcher, ResultCache, SearchResult

__all__ = ["BM25Retriever", "DenseRetriever", "Run", "RunError", "read_trec", "write_trec", "fuse", "METHODS",
           "evaluate", "per_query", "HybridSearcher", "SearchResult", "ResultCache", "QueryError", "SearchError",
           "QualityMonitor"]
