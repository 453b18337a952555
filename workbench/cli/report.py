"""`workbench run` (the main job: the notebook series, then the report) and `workbench report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import emit


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="execute the notebook series and write the report (the main job)")
    run.add_argument("notebooks", nargs="*", type=Path, help="default: the whole series")
    run.add_argument("--ci", action="store_true", help="use each notebook's small CI parameters")
    run.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default out/)")
    run.add_argument("--json", action="store_true", help="print what was written as JSON")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="(re)build the report from executed notebooks' results")
    rep.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="folder of the executed notebooks (default out/)")
    rep.add_argument("--json", action="store_true", help="print what was written as JSON")
    rep.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from workbench.series import run_job

    done = run_job(args.out, ci=args.ci, notebooks=args.notebooks or None,
                   log=(lambda m: None) if args.json else (lambda m: print(m, flush=True)))
    emit(done, args.json, [f"report: {done['markdown']} and {done['html']}"])
    return 0


def _report(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.report import build_report

    md, html = build_report(args.out or output_dir())
    emit({"markdown": str(md), "html": str(html)}, args.json, [f"report: {md} and {html}"])
    return 0
