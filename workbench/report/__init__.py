"""The benchmark report, built from the tracking store: the runs one ``workbench run`` recorded.

``build_report(store, out)`` writes ``out/index.html`` (one self-contained page: figures embedded) and
``out/report.md`` (figures under ``out/report_figures/``). Sections: :mod:`workbench.report.sections`;
reading the store: :mod:`workbench.report.source`; the page: :mod:`workbench.report.render`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import ReportError
from workbench.io import atomic_write_bytes, atomic_write_text
from workbench.report.format import format_seconds
from workbench.report.render import to_html, to_markdown
from workbench.report.sections import Section, build_sections
from workbench.report.source import RUN_GROUP_TAG, SeriesRun, find_series, load_series
from workbench.tracking.store import Store

FIGURE_DIR = "report_figures"
TITLE = "workbench benchmark report"

__all__ = ["build_report", "format_seconds", "RUN_GROUP_TAG", "find_series", "load_series", "SeriesRun",
           "Section"]


def build_report(store: Store, out: str | Path, run_id: str | None = None) -> tuple[Path, Path]:
    """Write ``index.html`` and ``report.md`` for the series ``run_id`` (default: the latest one)
    in ``store`` into ``out``; returns both paths. No recorded series is a :class:`ReportError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    series = load_series(store, run_id)
    sections = build_sections(series)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = "CI-sized" if series.params.get("ci") == "True" else "full"
    kind += ", still running" if series.status == "RUNNING" else ""
    meta = (f"{len(series.notebooks)} notebooks ({kind} parameters), series run {series.run_id}, "
            f"total wall time {format_seconds(series.metrics.get('total_wall_time_s'))}; built {stamp} from "
            f"the tracking store.")
    out.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for caption, png in s.figures:
            atomic_write_bytes(out / FIGURE_DIR / caption, png)
    html_path = atomic_write_text(out / "index.html", to_html(TITLE, meta, sections))
    md_path = atomic_write_text(out / "report.md", to_markdown(TITLE, meta, sections, FIGURE_DIR))
    return html_path, md_path
