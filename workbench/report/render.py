"""The report as one self-contained HTML page (figures embedded as base64 PNGs, styles inline) and as
Markdown for a terminal or a pull request (figures referenced beside it)."""

from __future__ import annotations

import base64
import html
import re
from typing import Sequence

from workbench.report.sections import Section, Table

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:0 auto;padding:0 24px 48px;
color:#1f2328;line-height:1.45}
h1{margin:24px 0 4px}h2{margin-top:40px;padding-top:8px;border-top:2px solid #d0d7de}
p.meta{color:#57606a;margin-top:0}nav ol{padding-left:20px;margin:4px 0}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #d0d7de;border-radius:4px}
figcaption{color:#57606a;font-size:.85em}
table{border-collapse:collapse;margin:8px 0 4px;font-size:.9em}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}p.note{color:#57606a;font-size:.85em;margin:0 0 12px}
.source{color:#57606a;font-size:.85em}
"""


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _html_table(t: Table) -> str:
    def cell(tag: str, i: int, value: str) -> str:
        cls = " class='num'" if i in t.numeric else ""
        return f"<{tag}{cls}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", i, c) for i, c in enumerate(t.columns))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in t.rows)
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    return f"<table><caption>{html.escape(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def to_html(title: str, meta: str, sections: Sequence[Section]) -> str:
    """The whole page; every image is a ``data:image/png;base64`` URI, so the file stands alone."""
    toc = "".join(f"<li><a href='#{_anchor(s.title)}'>{html.escape(s.title)}</a></li>" for s in sections)
    parts = [f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p><nav><ol>{toc}</ol></nav>"]
    for s in sections:
        parts.append(f"<section id='{_anchor(s.title)}'><h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        for caption, png in s.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts += [_html_table(t) for t in s.tables if t.rows]
        parts.append(f"<p class='source'>Measured by {html.escape(s.source)}.</p></section>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|")


def to_markdown(title: str, meta: str, sections: Sequence[Section], figure_dir: str) -> str:
    """Markdown with figures linked under ``figure_dir`` (written beside it by the caller)."""
    lines = [f"# {title}", "", meta, ""]
    for s in sections:
        lines += [f"## {s.title}", ""] + ([s.text, ""] if s.text else [])
        lines += [f"![{c}]({figure_dir}/{c})" for c, _ in s.figures] + ([""] if s.figures else [])
        for t in s.tables:
            if not t.rows:
                continue
            align = ["---:" if i in t.numeric else ":---" for i in range(len(t.columns))]
            lines += [f"**{t.title}**", "", "| " + " | ".join(_md_cell(c) or " " for c in t.columns) + " |",
                      "| " + " | ".join(align) + " |"]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in t.rows]
            lines += (["", t.note] if t.note else []) + [""]
        lines += [f"_Measured by {s.source}._", ""]
    return "\n".join(lines)
