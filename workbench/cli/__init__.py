"""The ``workbench`` command. Each command group lives in its own module with ``register(subparsers)``.

Command modules import heavy libraries (torch, faiss, mlflow) inside their handlers, so that
``workbench --help`` stays fast. Flags mean the same everywhere: ``--out DIR`` is an output folder,
``--json`` prints the result as JSON, ``--no-track`` logs nothing to the tracking store.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Sequence

from workbench.errors import WorkbenchError
from workbench.tracking.store import Store

COMMAND_MODULES = ("data", "embed", "ann", "filtered", "hybrid", "tracking", "features", "report", "pg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description="A research workbench for the data side of AI systems: embeddings, "
        "vector indexes, hybrid search, experiment tracking and feature stores.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"workbench.cli.{name}").register(sub)
    return parser


def emit(payload: dict[str, Any], as_json: bool, lines: Sequence[str] = ()) -> None:
    """Print a command's result: JSON on stdout with ``--json``, else human-readable lines."""
    if as_json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        for line in lines:
            print(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The one place a command's tracking store is resolved from settings; handlers pass it down.
    args.store = Store.from_settings()
    try:
        rc = args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
