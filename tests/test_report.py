"""The report gathers each notebook's figures and key results."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.report import build_report


def test_report_lists_figures_and_scalars(tmp_path: Path) -> None:
    nb = tmp_path / "03_recall_latency_tradeoffs"
    nb.mkdir()
    (nb / "results.json").write_text(json.dumps({"best": {"qps": 1234.5, "recall": 0.97}, "rows": [1, 2]}))
    (nb / "recall_qps.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "empty").mkdir()  # a folder without results.json is not a section
    md, html = build_report(tmp_path)
    text = md.read_text()
    assert "## 03_recall_latency_tradeoffs" in text and "## empty" not in text
    assert "| best.recall | 0.97 |" in text
    assert "![03_recall_latency_tradeoffs/recall_qps.png](03_recall_latency_tradeoffs/recall_qps.png)" in text
    assert "<img src='03_recall_latency_tradeoffs/recall_qps.png'" in html.read_text()


def test_workbench_run_executes_notebooks_then_writes_the_report(tmp_path: Path, capsys) -> None:
    """`workbench run` (workbench.series): a notebook with a parameters cell runs, then the report lists it."""
    import nbformat

    from workbench.cli import main

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('out_dir = "unused"\nvalue = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, pathlib\n"
        "pathlib.Path(out_dir, 'results.json').write_text(json.dumps({'value': value * 2}))")]
    nb.metadata["workbench"] = {"ci_parameters": {"value": 21}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_tiny.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--ci", "--out", str(out), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["notebooks"] == ["99_tiny"] and json.loads((out / "99_tiny" / "results.json").read_text()) == {
        "value": 42}
    assert "| value | 42 |" in Path(done["markdown"]).read_text()
