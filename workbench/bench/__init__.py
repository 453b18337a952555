"""The ANN benchmark: ``harness`` (runner), ``results`` (Parquet store), ``sinks`` (tracking seam),
``pareto``, ``plots``, ``panel`` (ipywidgets callback), ``data`` (what ``workbench ann DATA`` accepts),
``reference`` (named sweeps), ``overhead`` (harness vs bare loop), ``filtered`` (filtered search)."""
