"""`workbench` commands of this group (placeholder until its issue lands)."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's subcommands."""
