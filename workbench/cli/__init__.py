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
import warnings
from typing import Any, Sequence

from workbench.errors import TrackingUnavailableWarning, WorkbenchError
from workbench.tracking.store import Store, unreachable_reason

COMMAND_MODULES = ("data", "embed", "ann", "filtered", "hybrid", "tracking", "features", "report", "pg", "db", "tune")


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


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """The workbench's own warnings as one line, ``warning: ...``; others as Python prints them."""
    if issubclass(category, TrackingUnavailableWarning):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the problem; return its code (2), as for errors
        return exc.code if isinstance(exc.code, int) else 2
    warnings.formatwarning = _format_warning
    try:
        # The one place a command's tracking store is resolved from settings; handlers pass it down.
        args.store = Store.from_settings()
        rc = args.func(args)
        if getattr(args, "no_track", True) is False and not getattr(args, "json", False):
            queued = unreachable_reason(args.store.uri)  # say where the runs went: the store or the outbox
            print(f"runs queued in {args.store.outbox} (`workbench runs sync` logs them)" if queued
                  else f"runs tracked in {args.store.uri} (`workbench runs` lists them)")
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
