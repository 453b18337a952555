"""The plotted benchmark report: every notebook's figures and key results on one page.

Reads ``OUT/<notebook>/results.json`` and the PNGs beside it; writes ``OUT/report.md`` and
``OUT/report.html`` (images linked relative to OUT, so the folder can be copied as a whole).
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.io import atomic_write_text


def _scalars(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested results into (dotted key, scalar) pairs; lists of records are left to the notebook."""
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _scalars(v, f"{prefix}{k}.")
        return out
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return [(prefix.rstrip("."), obj)]
    return []


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def collect(out_dir: Path) -> list[dict[str, Any]]:
    sections = []
    for nb_dir in sorted(p for p in out_dir.iterdir() if p.is_dir() and (p / "results.json").is_file()):
        results = json.loads((nb_dir / "results.json").read_text())
        sections.append({"name": nb_dir.name, "scalars": _scalars(results),
                         "figures": sorted(str(p.relative_to(out_dir)) for p in nb_dir.rglob("*.png"))})
    return sections


def build_report(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` under ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    sections = collect(out_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# workbench benchmark report\n\nGenerated {stamp}. Every figure below was measured by the "
          "notebook named in its section; the executed notebooks sit beside this file.\n"]
    body = [f"<h1>workbench benchmark report</h1><p>Generated {stamp}.</p>"]
    for s in sections:
        md.append(f"\n## {s['name']}\n\n[executed notebook]({s['name']}.ipynb)\n")
        body.append(f"<h2>{html.escape(s['name'])}</h2><p><a href='{s['name']}.ipynb'>executed notebook</a></p>")
        for fig in s["figures"]:
            md.append(f"\n![{fig}]({fig})")
            body.append(f"<figure><img src='{html.escape(fig)}' style='max-width:100%'>"
                        f"<figcaption>{html.escape(fig)}</figcaption></figure>")
        if s["scalars"]:
            md.append("\n| result | value |\n|---|---|")
            md += [f"| {k} | {_fmt(v)} |" for k, v in s["scalars"]]
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                           for k, v in s["scalars"])
            body.append(f"<table><tr><th>result</th><th>value</th></tr>{rows}</table>")
    style = ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>")
    md_path = atomic_write_text(out_dir / "report.md", "\n".join(md) + "\n")
    html_path = atomic_write_text(out_dir / "report.html",
                                  f"<!doctype html><html><head><meta charset='utf-8'><title>workbench report</title>"
                                  f"{style}</head><body>{''.join(body)}</body></html>\n")
    return md_path, html_path
