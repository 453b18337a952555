"""`workbench run` (the main job: the notebook series, then the report) and `workbench report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import emit
from workbench.cli.args import checked_out, out_dir


def _numbers(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() and len(p) <= 2 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected notebook numbers such as 03 or 03,05")
    return parts


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="execute the notebook series and write the report (the main job)")
    run.add_argument("notebooks", nargs="*", type=Path, help="default: the whole series")
    run.add_argument("--only", type=_numbers, default=None, metavar="NN[,NN]",
                     help="run only these notebooks of the series, by number (e.g. 03,05)")
    run.add_argument("--ci", action="store_true", help="use each notebook's small CI parameters")
    run.add_argument("--out", type=out_dir, default=None, metavar="DIR", help="output folder (default out/)")
    run.add_argument("--json", action="store_true", help="print what was written as JSON")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="(re)build the report of a `workbench run` from the tracking store")
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--run", default=None, metavar="ID",
                       help="the series run id, one of its notebook runs, or its run-group id")
    which.add_argument("--latest", action="store_true", help="the latest finished `workbench run` (default)")
    rep.add_argument("--out", type=out_dir, default=None, metavar="DIR",
                     help="folder for index.html and report.md (default out/)")
    rep.add_argument("--json", action="store_true", help="print what was written as JSON")
    rep.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.errors import WorkbenchError
    from workbench.series import run_job, select_notebooks

    if args.only and args.notebooks:
        raise WorkbenchError("give notebooks by path or --only NN, not both")
    notebooks = select_notebooks(args.only) if args.only else (args.notebooks or None)
    done = run_job(args.store, checked_out(args.out, output_dir), ci=args.ci, notebooks=notebooks,
                   log=(lambda m: None) if args.json else (lambda m: print(m, flush=True)))
    emit(done, args.json, [f"report: {done['html']} and {done['markdown']}"])
    return 0


def _report(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.report import build_report

    html, md = build_report(args.store, checked_out(args.out, output_dir), run_id=args.run)
    emit({"html": str(html), "markdown": str(md)}, args.json, [f"report: {html} and {md}"])
    return 0
