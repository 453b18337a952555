"""The experiment names the workbench logs to, in one place (``workbench runs --experiment NAME``)."""

from __future__ import annotations

INDEX_BENCHMARKS = "index-benchmarks"  # `workbench ann`, notebooks 03 and 06
# Filtered points share the index experiment (tagged kind=filtered-search), so `workbench best` weighs them
# against unfiltered ones.
FILTERED_SEARCH = INDEX_BENCHMARKS
HYBRID = "hybrid"                      # `workbench hybrid`, notebook 05
FEATURE_STORE = "feature-store"        # `workbench features ...`
EMBEDDINGS = "embeddings"
SERIES = "benchmark-series"            # `workbench run`: one parent run per series, a child per notebook
TRACKING_BENCH = "tracking-bench"      # `workbench tracking-bench` (on its own, usually temporary, store)

EXPERIMENTS = (INDEX_BENCHMARKS, HYBRID, FEATURE_STORE, EMBEDDINGS, SERIES, TRACKING_BENCH)
