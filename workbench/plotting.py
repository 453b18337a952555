"""Saving figures: every PNG the workbench writes goes through here (atomic, so a crash leaves no half file)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from workbench.io import atomic_write_bytes


def save_png(fig: Any, path: str | Path, dpi: int = 120, close: bool = True) -> Path:
    """Render ``fig`` to PNG in memory, write it with a temp file and rename, and close the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
