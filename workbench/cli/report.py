"""`workbench run` (the main job) and `workbench report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import emit


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="execute the notebook series and write the report (the main job)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default out/)")
    run.add_argument("--ci", action="store_true", help="use each notebook's small CI parameters")
    run.add_argument("notebooks", nargs="*", type=Path, help="default: the whole series")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="(re)build the report from executed notebooks' results")
    rep.add_argument("--out", type=Path, default=None)
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.notebooks import run_series
    from workbench.report import build_report

    out = args.out or output_dir()
    run_series(out, ci=args.ci, notebooks=args.notebooks or None)
    md, html = build_report(out)
    print(f"report: {md} and {html}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.report import build_report

    md, html = build_report(args.out or output_dir())
    emit({"markdown": str(md), "html": str(html)}, args.json, [f"report: {md} and {html}"])
    return 0
