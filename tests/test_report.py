"""The report is built from the runs one `workbench run` recorded in the tracking store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from report_series import record_series
from workbench.cli import main
from workbench.errors import ReportError
from workbench.report import build_report, format as f
from workbench.tracking.store import Store


def test_numbers_are_formatted_for_people() -> None:
    assert f.qps(82714.149) == "82,714" and f.recall(0.99941) == "0.999" and f.qps(None) == f.MISSING
    assert [f.format_seconds(s) for s in (0.00087, 0.0123, 1.268, 75.2, 4000)] == [
        "870 µs", "12.3 ms", "1.27 s", "1 min 15 s", "1 h 06 min"]
    assert f.size(128) == "128 B" and f.size(1536) == "1.5 KiB" and f.percent(0.0109) == "1.1 %"


def test_report_from_the_store_is_self_contained(tmp_path: Path) -> None:
    store = Store.in_folder(tmp_path / "store")
    run_id = record_series(store, tmp_path / "nb")
    html_path, md_path = build_report(store, tmp_path / "report")  # the latest series
    page = html_path.read_text()
    assert html_path.name == "index.html"
    assert page.count("src='data:image/png;base64,") == 3 and not re.search(r"src='(?!data:)", page)
    assert "Best QPS at a recall target" in page and "82,714" in page and "0.999" in page
    assert "0.6957*" in page and "0.8007<" in page  # bm25 differs from dense at p < 0.05; convex does not
    assert "Environment" in page and run_id in page and "33 s" in page
    md = md_path.read_text()
    assert "| faiss:HNSW,Flat | 82,714 | 82,714 | 82,714 |" in md and "| faiss:IVF,PQ | – | – | – |" in md
    assert (tmp_path / "report" / "report_figures" / "03_recall_latency_tradeoffs" / "recall_qps.png").is_file()
    # the same series by its run-group id, and by one of its notebook runs
    assert build_report(store, tmp_path / "r2", run_id="testgroup")[0].read_text().count("<section") == 4


def test_report_without_a_recorded_series_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    with pytest.raises(ReportError, match="no `workbench run` recorded"):
        build_report(Store.in_folder(tmp_path / "empty"), tmp_path / "out")
    store = Store.in_folder(tmp_path / "store")
    record_series(store, tmp_path / "nb")
    with pytest.raises(ReportError, match="--run nope: no series run"):
        build_report(store, tmp_path / "out", run_id="nope")


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('out_dir = "unused"\nvalue = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["workbench"] = {"ci_parameters": {"value": 21}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_workbench_run_records_the_series_then_builds_the_report(tmp_path: Path, capsys) -> None:
    """`workbench run`: one line per notebook with its time, the report built from the store at the end."""
    path = _notebook(tmp_path / "99_tiny.ipynb", "import json, pathlib\n"
                     "pathlib.Path(out_dir, 'results.json').write_text(json.dumps({'value': value * 2}))")
    out = tmp_path / "out"
    assert main(["run", str(path), "--ci", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^99_tiny\.ipynb +[\d.]+ (ms|s)$", printed, re.M) and "report: " in printed
    assert json.loads((out / "99_tiny" / "results.json").read_text()) == {"value": 42}
    assert "| value | 42 |" in (out / "report.md").read_text() and (out / "index.html").is_file()
    assert main(["report", "--latest", "--out", str(tmp_path / "again"), "--json"]) == 0
    assert Path(json.loads(capsys.readouterr().out)["html"]).is_file()


def test_workbench_run_names_the_failing_notebook_and_cell(tmp_path: Path, capsys) -> None:
    path = _notebook(tmp_path / "98_broken.ipynb", "raise ValueError('boom')")
    assert main(["run", str(path), "--ci", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "98_broken.ipynb  FAILED" in captured.out
    assert re.search(r"error: 98_broken\.ipynb: cell \d+ \(`raise ValueError\('boom'\)`\) failed: ValueError: boom",
                     captured.err)


def test_only_picks_notebooks_by_number(capsys) -> None:
    assert main(["run", "--only", "97", "--ci"]) == 2
    assert "no notebook numbered 97; the series has 00" in capsys.readouterr().err
    assert main(["run", "--only", "x3"]) == 2
