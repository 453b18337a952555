"""Every notebook in notebooks/ is committed clean, and its CI run shows the figures stated for it in
``notebook_expectations.py`` (each with its tolerance and reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebook_expectations import EXPECTATIONS, Check, Notebook, equal
from test_notebook_engine import output_widget_images

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


def test_every_notebook_has_expectations() -> None:
    missing = sorted(set(IDS) - set(EXPECTATIONS))
    assert not missing, f"no expectations for {', '.join(missing)}: add them to tests/notebook_expectations.py"
    assert not set(EXPECTATIONS) - set(IDS), f"expectations for absent notebooks: {set(EXPECTATIONS) - set(IDS)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_expectations_are_for_the_ci_parameters(path: Path) -> None:
    """The expected values hold for the CI parameters stated beside them; a changed set must revisit them."""
    if path.stem not in EXPECTATIONS:
        pytest.skip("no expectations yet (test_every_notebook_has_expectations fails)")
    expected = EXPECTATIONS[path.stem]
    assert ci_parameters(path) == expected.ci_parameters, \
        f"{path.name}: CI parameters {ci_parameters(path)} differ from those its expectations assume"
    assert all(c.reason.strip() and c.expected.strip() for c in expected.checks)


def test_checks_report_every_failure_in_one_list() -> None:
    table = Notebook({}, (
        equal("a/b", 1, "one"),
        equal("a/c", True, "two"),
        equal("missing/key", 0, "three"),
        Check(("a/b", "a/d"), "b > d", lambda b, d: b > d, "four"),
        Check(("a/none",), ">= 0.5", lambda v: v >= 0.5, "a None where a number is due fails, not raises"),
    ))
    failures = table.failures({"a": {"b": 1, "c": 1, "d": 2, "none": None}})
    assert failures == [
        "a/c = 1: expected == True (two)",
        "missing/key: missing from results.json (expected == 0; three)",
        "a/b = 1, a/d = 2: expected b > d (four)",
        "a/none = None: expected >= 0.5 (a None where a number is due fails, not raises)",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executes_with_ci_parameters(path: Path, tmp_path: Path) -> None:
    results = run_notebook(path, tmp_path, ci=True, timeout=300)  # per cell: a CI cell takes seconds
    assert results, f"{path.name} wrote an empty results.json"
    assert list((tmp_path / path.stem).glob("*.png")) or results.get("figures") == [], \
        f"{path.name} saved no figure"
    if "make_panel(" in path.read_text():  # panels are drawn headless too: their image is in the widget state
        assert output_widget_images(tmp_path / path.name), f"{path.name}: no panel image in its Output widgets"
    failures = EXPECTATIONS[path.stem].failures(results) if path.stem in EXPECTATIONS else []
    assert not failures, f"{path.name}: {len(failures)} expectation(s) failed:\n  " + "\n  ".join(failures)
