"""An ipywidgets panel over a sweep: pick an index, move its query parameter (efSearch, nprobe, ef),
see the point move along the recall/QPS frontier. ``panel_update`` is the plain callback (tests call it
directly); ``make_panel`` only wires widgets to it.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from workbench.bench.plots import draw_recall_qps
from workbench.plotting import png_bytes, pyplot, show_png


def swept_parameter(results: pd.DataFrame, index: str) -> tuple[str | None, list[Any]]:
    """The query parameter that varies across ``index``'s points and its sorted values (None if none does)."""
    params = [json.loads(p) for p in results.loc[results["index"] == index, "query_params"]]
    if not params:
        raise KeyError(f"no measured points for index {index!r}")
    for name in params[0]:
        values = sorted({p.get(name) for p in params})
        if len(values) > 1:
            return name, values
    return None, []


def panel_update(results: pd.DataFrame, index: str, value: Any, ax: Any = None) -> dict[str, Any]:
    """The measured point of ``index`` whose swept parameter is ``value``, drawn highlighted on the
    frontier plot (on ``ax`` when given). Returns the point's row as a dict."""
    name, values = swept_parameter(results, index)
    rows = results[results["index"] == index]
    if name is not None:
        if value not in values:
            raise ValueError(f"{name}={value!r} was not measured for {index}; measured: {values}")
        rows = rows[[json.loads(p).get(name) == value for p in rows["query_params"]]]
    row = rows.iloc[0]
    if ax is not None:
        draw_recall_qps(results, highlight=row, ax=ax)
    return row.to_dict()


def make_panel(results: pd.DataFrame) -> Any:
    """Dropdown (index) + slider (its swept parameter) + the plot; returns the widget box."""
    import ipywidgets as w

    plt = pyplot()
    indexes = [i for i in sorted(results["index"].unique()) if swept_parameter(results, i)[0]]
    dropdown = w.Dropdown(options=indexes, description="index")
    name, values = swept_parameter(results, indexes[0])
    slider = w.SelectionSlider(options=values, value=values[0], description=name)
    out = w.Output()

    def redraw(*_: Any) -> None:
        fig, ax = plt.subplots(figsize=(9, 5.5))
        row = panel_update(results, dropdown.value, slider.value, ax=ax)
        show_png(out, png_bytes(fig),
                 f"{row['point']}: recall {row['recall']:.3f}, {row['qps']:,.0f} QPS, p99 {row['p99_ms']:.3f} ms")

    def on_index(_: Any) -> None:
        slider.unobserve(redraw, "value")
        name, values = swept_parameter(results, dropdown.value)
        slider.options, slider.description = values, name
        slider.value = values[0]
        slider.observe(redraw, "value")
        redraw()

    dropdown.observe(on_index, "value")
    slider.observe(redraw, "value")
    redraw()
    return w.VBox([dropdown, slider, out])
