"""Every notebook in notebooks/ runs with its CI parameters, writes results.json, and is committed clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.series import (
    ci_parameters,
    has_parameters_cell,
    notebook_paths,
    run_notebook,
)

NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]


def test_series_is_present() -> None:
    assert {"00_quickstart", "01_embeddings_and_storage"} <= set(IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_clean(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} carries widget state"
    assert has_parameters_cell(path), f"{path.name} has no cell tagged 'parameters'"
    assert "out_dir" in "".join(next(c for c in code if "parameters" in c["metadata"].get("tags", []))["source"])
    assert ci_parameters(path), f"{path.name} has no metadata.workbench.ci_parameters"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executes_with_ci_parameters(path: Path, tmp_path: Path) -> None:
    results = run_notebook(path, tmp_path, ci=True, timeout=600)
    assert results, f"{path.name} wrote an empty results.json"
    assert list((tmp_path / path.stem).glob("*.png")) or results.get("figures") == [], \
        f"{path.name} saved no figure"
