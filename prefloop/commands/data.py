"""Data in and out: init, prompts import, labels import, annotators, export, status."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()


def init(ctx: typer.Context) -> None:
    """Create the database (or upgrade its schema to the latest version, keeping all data)."""
    from prefloop.cli import state
    from storage.db import database_url

    st = state(ctx)
    st.engine  # noqa: B018  (opening the engine runs the migrations)
    console.print(f"database ready: {database_url(st.config.db)}")


def register(app: typer.Typer) -> None:
    app.command()(init)
