"""Every exception and warning class of the workbench, in one place.

Errors that name the problem (file, line, column, id, both numbers of a mismatch). The CLI prints a
``WorkbenchError`` as one line, ``error: <message>``, exits 2 and never shows a traceback.
"""


class WorkbenchError(Exception):
    """Base class for user-facing errors: bad input, missing files, misconfiguration."""


# -- data and vectors --------------------------------------------------------------------------
class DatasetError(WorkbenchError, ValueError):
    """A data file is missing, malformed or inconsistent (the message names file and line)."""


class DimensionError(WorkbenchError, ValueError):
    """Vectors of the wrong dimension (the message names both numbers)."""


class OfflineError(WorkbenchError, RuntimeError):
    """A download was needed but there is no network."""


# -- embedding ---------------------------------------------------------------------------------
class ModelUnavailableError(WorkbenchError, RuntimeError):
    """The embedding model cannot be loaded offline."""


# -- indexes and search ------------------------------------------------------------------------
class IndexSpecError(WorkbenchError, ValueError):
    """An index SPEC, factory string, metric or parameter name/value is invalid."""


class TuneError(WorkbenchError, ValueError):
    """Bad tuner input: an unknown family, a recall target outside (0, 1], a budget that is not a duration."""


class QueryError(WorkbenchError, ValueError):
    """Vectors, queries or k that cannot be searched: empty, NaN, zero norm, k larger than the index,
    or an empty or non-text query."""


class DuplicateResultError(QueryError):
    """An index returned the same id twice for one query."""


class PredicateError(WorkbenchError, ValueError):
    """A filter predicate outside the grammar, on an unknown column, or with a value of the wrong type."""


class EmptySelectionError(WorkbenchError, ValueError):
    """A predicate selects no ids, so there is nothing to search."""


class DatabaseError(WorkbenchError, RuntimeError):
    """A database server (PostgreSQL, LanceDB) cannot be started, reached or used; the message says why."""


class ClusterError(WorkbenchError, RuntimeError):
    """A Ray cluster cannot be started, reached or used (the message names the address and why)."""


class SweepIncomplete(WorkbenchError, RuntimeError):
    """Some build configurations of a sweep finally failed (on an executor); the rest were written. The
    message names the failed configurations; running the sweep again re-measures only them."""

    def __init__(self, message: str, failed: tuple[str, ...] = ()) -> None:
        super().__init__(message)   # failed has a default so that the exception still pickles
        self.failed = tuple(failed)


# -- hybrid search and IR evaluation -----------------------------------------------------------
class SearchError(WorkbenchError, RuntimeError):
    """Every retriever failed; the message names each failure."""


class RunError(WorkbenchError, ValueError):
    """A run is malformed: unknown document, NaN score, duplicate, unsorted or mismatched shapes."""


class LexicalError(WorkbenchError, ValueError):
    """Bad BM25 configuration, an empty corpus, or an index folder that cannot be read."""


class MetricError(WorkbenchError, ValueError):
    """An unknown metric name or judgements that cannot be evaluated."""


class DenseError(WorkbenchError, ValueError):
    """Vectors and ids that do not match, or a query encoder that is missing."""


# -- tracking ----------------------------------------------------------------------------------
class TrackingError(WorkbenchError, ValueError):
    """Bad input to the tracking API (a non-numeric metric, a missing artifact, an unknown run)."""


class CorruptCacheEntry(UserWarning):
    """An embedding cache entry failed its checksum or was truncated; it is recomputed."""


class TrackingUnavailableWarning(UserWarning):
    """The tracking store could not take a run; it waits in the local outbox."""


# -- feature store -----------------------------------------------------------------------------
class FeatureStoreError(WorkbenchError, ValueError):
    """Bad feature-store input: unknown view or feature, missing column, wrong type, name clash."""


class TimestampError(FeatureStoreError):
    """A column that should hold timestamps does not, or holds ones finer than a microsecond."""


# -- outputs and settings ----------------------------------------------------------------------
class OutputError(WorkbenchError, OSError):
    """An output or cache folder that cannot be written (under a regular file, read-only, /proc, /sys)."""


class ResultsIntegrityError(DatasetError):
    """A results file whose bytes do not match its checksum sidecar (damaged on disk)."""


class ReportError(WorkbenchError, ValueError):
    """A report asked of a folder that holds no executed notebook's results."""


class NotebookFailedError(WorkbenchError):
    """A notebook of the series failed: the message names the notebook and the failing cell."""
