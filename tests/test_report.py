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
