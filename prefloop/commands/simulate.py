"""CLI: the simulate area (see README)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
