"""Errors that name the problem. The CLI prints them without a traceback."""


class WorkbenchError(Exception):
    """Base class for user-facing errors: bad input, missing files, misconfiguration."""


class DatasetError(WorkbenchError, ValueError):
    """A data file is missing, malformed or inconsistent (the message names file and line)."""


class DimensionError(WorkbenchError, ValueError):
    """Vectors of the wrong dimension (the message names both numbers)."""


class ModelUnavailableError(WorkbenchError, RuntimeError):
    """The embedding model cannot be loaded offline."""


class OfflineError(WorkbenchError, RuntimeError):
    """A download was needed but there is no network."""
