"""Notebook 05's fusion-weight panel: move the BM25 weight of the convex combination (and pick the score
normalisation), read nDCG@10 of every collection at that weight on the curves and in a table.
``panel_update`` is the plain callback (tests call it directly); ``make_panel`` only wires widgets to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from workbench.hybrid.plots import NORM_LABELS, plot_weight_curves, weight_view
from workbench.plotting import png_bytes, show_png

if TYPE_CHECKING:
    from workbench.hybrid.experiment import HybridResults


def weights(results: Mapping[str, "HybridResults"]) -> list[float]:
    """The grid weights every collection's curve was measured at (the slider's stops)."""
    grids = [set(np.round(r.weight_curve["weight"].to_numpy(float), 6)) for r in results.values()]
    return sorted(set.intersection(*grids))


def panel_update(results: Mapping[str, "HybridResults"], weight: float, norm: str = "tmm") -> tuple[pd.DataFrame, bytes]:
    """nDCG@10 per collection at ``weight`` with ``norm`` (``weight_view``) and the curves with the weight
    marked, as PNG bytes."""
    if norm not in NORM_LABELS:
        raise ValueError(f"unknown normalisation {norm!r}; known: {', '.join(NORM_LABELS)}")
    table = weight_view(results, weight, norm)
    fig = plot_weight_curves(results, mark=weight)
    return table, png_bytes(fig, dpi=80)


def make_panel(results: Mapping[str, "HybridResults"], weight: float = 0.3, norm: str = "tmm") -> Any:
    """Weight slider (the measured grid) + normalisation dropdown + the figure and table; returns the box."""
    import ipywidgets as w

    stops = weights(results)
    slider = w.SelectionSlider(options=stops, value=min(stops, key=lambda s: abs(s - weight)),
                               description="BM25 w")
    dropdown = w.Dropdown(options=list(NORM_LABELS), value=norm, description="norm")
    out = w.Output()

    def redraw(*_: Any) -> None:
        table, png = panel_update(results, slider.value, dropdown.value)
        show_png(out, png, table.round(4))

    slider.observe(redraw, "value")
    dropdown.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([slider, dropdown]), out])
