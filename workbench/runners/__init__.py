"""One runner per experiment: parameters (and a tracking sink) in, a result object (frames, figures,
summary) out. The CLI and the notebooks only call these; each reports through ``workbench.tracking.sink``.

``ann`` (``workbench ann``, notebooks 02-03), ``filtered``, ``hybrid`` (notebook 05), ``features``
(``workbench features``, notebook 07), ``tracking_bench`` (``workbench tracking-bench``, notebook 06).
"""
