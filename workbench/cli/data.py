"""`workbench data list` and `workbench data fetch NAME`."""

from __future__ import annotations

import argparse

from workbench.cli import emit
from workbench.cli.args import out_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list and fetch datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)

    ls = dsub.add_parser("list", help="which collections are present, and where")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    ls.set_defaults(func=_list)

    fetch = dsub.add_parser("fetch", help="download a Glasgow IR collection and convert it to the BEIR layout")
    fetch.add_argument("name", help="cranfield, cisi or medline")
    fetch.add_argument("--from", dest="source", help="a local raw archive or folder instead of downloading")
    fetch.add_argument("--out", type=out_dir, metavar="DIR", help="output folder (default data/NAME)")
    fetch.add_argument("--json", action="store_true", help="print the result as JSON")
    fetch.set_defaults(func=_fetch)


def _list(args: argparse.Namespace) -> int:
    from workbench.config import data_dirs
    from workbench.data import list_datasets

    found = list_datasets()
    payload = {"search_path": [str(d) for d in data_dirs()],
               "datasets": [{"name": d.name, "present": d.present, "path": str(d.path) if d.path else None}
                            for d in found]}
    lines = [f"{d.name:<12} {'present' if d.present else 'missing':<8} {d.path or ''}" for d in found]
    lines.append("search path: " + ", ".join(payload["search_path"]))
    emit(payload, args.json, lines)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from workbench.data.fetch import fetch_dataset

    path = fetch_dataset(args.name, dest=args.out, source=args.source)
    emit({"name": args.name, "path": str(path)}, args.json, [f"{args.name}: written to {path}"])
    return 0
