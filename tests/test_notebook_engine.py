"""The series' notebook executor draws widget panels headless: an Output widget captured many times in one
cell never leaves the executor waiting on a finished cell (jupyter/nbclient#312, see
``workbench.series._sliced_get_msg``), and the captured image is in the executed notebook's widget state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from queue import Empty

import nbformat
import pytest

from workbench.series import SHELL_POLL_S, _sliced_get_msg, run_notebook

CAPTURES = """
import io, json, pathlib
import ipywidgets as w
from IPython.display import Image, display
from workbench.plotting import png_bytes, pyplot, show_png

out = w.Output()
display(out)
for i in range(n):
    fig, ax = pyplot().subplots(figsize=(2, 2))
    ax.plot([0, i])
    show_png(out, png_bytes(fig, dpi=30), f"draw {i}")
pathlib.Path(out_dir, "results.json").write_text(json.dumps({"draws": n}))
"""


def widget_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 3\nout_dir = '.'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(CAPTURES)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "99_widgets.ipynb"
    nbformat.write(nb, path)
    return path


def output_widget_images(executed: Path) -> list[dict]:
    """The image outputs held by the Output widgets in an executed notebook's saved widget state."""
    state = json.loads(executed.read_text())["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    return [o for model in state["state"].values() if model["model_name"] == "OutputModel"
            for o in model["state"].get("outputs", []) if "image/png" in o.get("data", {})]


@pytest.mark.slow
def test_many_output_captures_in_one_cell_finish_and_are_kept(tmp_path: Path) -> None:
    # Before the sliced poll, about half of such runs sat until the cell timeout although the cell had
    # finished in seconds (measured: 5 of 8 runs of 200 captures): a timeout here is that stall.
    path = widget_notebook(tmp_path)
    for attempt in range(2):
        assert run_notebook(path, tmp_path / f"run{attempt}", parameters={"n": 60}, timeout=60) == {"draws": 60}
        images = output_widget_images(tmp_path / f"run{attempt}" / path.name)
        assert len(images) == 1, "the Output widget holds the last drawing only (clear_output(wait=True))"


def test_sliced_poll_returns_a_message_queued_during_a_missed_wakeup() -> None:
    calls: list[float | None] = []

    async def get_msg(timeout: float | None = None) -> dict:
        calls.append(timeout)
        if len(calls) < 4:      # the poll slept through the reply's arrival three times
            raise Empty
        return {"msg": "execute_reply"}

    assert asyncio.run(_sliced_get_msg(get_msg)(timeout=None)) == {"msg": "execute_reply"}
    assert len(calls) == 4 and all(t is not None and t <= SHELL_POLL_S for t in calls)


def test_sliced_poll_still_times_out() -> None:
    async def never(timeout: float | None = None) -> dict:
        await asyncio.sleep(timeout or 0)
        raise Empty

    with pytest.raises(Empty):
        asyncio.run(_sliced_get_msg(never)(timeout=3 * SHELL_POLL_S))
