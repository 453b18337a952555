"""Figures: the one place the matplotlib backend is chosen (:func:`pyplot`), and the one way a PNG is
written (:func:`save_png`, atomic, so a crash leaves no half file)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from workbench.io import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the non-interactive Agg backend unless pyplot was loaded already.

    The workbench only writes figures to files, so it needs no window (and headless runs have no display);
    a backend already in use (a notebook's inline backend) is kept. Every plotting
    module gets pyplot here, when it draws, so importing one selects nothing."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 120, close: bool = True) -> Path:
    """Render ``fig`` to PNG in memory, write it with a temp file and rename, and close the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def png_bytes(fig: Any, dpi: int = 90) -> bytes:
    """``fig`` as PNG bytes, figure closed (for widgets, which show images rather than files)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def show_png(out: Any, png: bytes, *extra: Any) -> None:
    """Replace what the ipywidgets ``Output`` ``out`` shows with the PNG, then ``extra`` objects.

    PNG bytes, not ``display(fig)``: under a non-inline backend (``MPLBACKEND=Agg``, as in headless runs)
    that sends only ``<Figure ...>`` text, so a panel looked undrawn."""
    from IPython.display import Image, display

    with out:
        out.clear_output(wait=True)
        display(Image(data=png, format="png"))
        for item in extra:
            if isinstance(item, str):
                print(item)
            else:
                display(item)
