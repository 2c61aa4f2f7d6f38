"""The ``prefloop`` console script: a thin layer over the library packages.

Each area registers its subcommands from ``prefloop/commands/<area>.py``; heavy imports (torch, trl)
happen inside the commands that need them, so ``prefloop --help`` and the app start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from core.config import ConfigError, load_config
from core.errors import PrefloopError
from prefloop.state import State

err_console = Console(stderr=True)

app = typer.Typer(
    name="prefloop",
    help="Human-preference annotation and DPO loop: generate -> label -> train -> serve back -> evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (default: ./prefloop.yaml if present)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one setting, e.g. --set train.learning_rate=1e-4 (repeatable)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy database URL (default: $PREFLOOP_DB, else var/prefloop.db)."),
    ] = None,
) -> None:
    ctx.obj = State(load_config(config, overrides or [], db))


def _register_commands() -> None:
    from prefloop.commands import annotate, data, evaluate, generate, models, serve, simulate, train

    for area in (data, models, generate, serve, annotate, train, evaluate, simulate):
        area.register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except (PrefloopError, ConfigError) as exc:
        # escaped: a message quoting "[question, answer]" or a file's text is not Rich markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
