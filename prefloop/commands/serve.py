"""CLI: the serve area — ``prefloop serve-model`` runs vLLM's OpenAI-compatible server (see README "vLLM")."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer

from core.errors import PrefloopError


def parse_adapters(items: list[str]) -> dict[str, str]:
    """``NAME=PATH`` pairs from ``--adapter``; PrefloopError on a malformed or repeated name."""
    adapters: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise PrefloopError(f"--adapter {item!r}: expected NAME=PATH, e.g. round-1=var/adapters/round-1")
        if name in adapters:
            raise PrefloopError(f"--adapter {name}: given twice; each adapter needs its own name")
        adapters[name.strip()] = path.strip()
    return adapters


SERVE_HELP = (
    "Start vLLM's OpenAI-compatible server with LoRA enabled, wait until it is healthy, keep it running "
    "until Ctrl-C.\n\n"
    "vLLM runs from its own environment (`make vllm-env` builds .venv-vllm) because it pins its own torch "
    "and transformers. Adapters given with --adapter are served from the start; `prefloop generate "
    "--backend vllm-server` loads each new model version at runtime (POST /v1/load_lora_adapter).\n\n"
    "Arguments after `--` go to vLLM unchanged, e.g. `prefloop serve-model -- --max-num-seqs 64`. "
    "The server's log is var/vllm/server-PORT.log."
)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_model(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            help="Base model: smollm2-135m, tiny, a local folder or a hub name (default: model.base)."
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: generation.vllm_port).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    python: Annotated[
        str | None,
        typer.Option(
            help="Python of the environment vLLM is installed in (default: generation.vllm_python)."
        ),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH of a LoRA adapter to serve from the start (repeatable)."),
    ] = None,
    max_lora_rank: Annotated[
        int | None,
        typer.Option(help="Largest adapter rank accepted (default: generation.vllm_max_lora_rank)."),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(help="Context length (default: the model's own).")
    ] = None,
) -> None:
    """Run vLLM's server from its own environment until Ctrl-C (help text: SERVE_HELP)."""
    from rich.console import Console

    from generation.serve import ServerSpec, resolve_python, start_server
    from models.adapters import check_max_lora_rank, validate_servable_adapter
    from models.loading import resolve_model
    from prefloop.state import state

    cfg = state(ctx).config
    console = Console(stderr=True)
    name = model or cfg.model.base
    vllm_python = resolve_python(python or cfg.generation.vllm_python)
    rank = check_max_lora_rank(max_lora_rank or cfg.generation.vllm_max_lora_rank)
    adapters = parse_adapters(adapter or [])
    model_dir = resolve_model(name)
    for path in adapters.values():
        validate_servable_adapter(path, rank, model_dir)
    spec = ServerSpec(
        model=model_dir,
        served_name=name,
        python=vllm_python,
        host=host,
        port=port or cfg.generation.vllm_port,
        max_lora_rank=rank,
        dtype=cfg.model.dtype,
        max_model_len=max_model_len,
        adapters=adapters,
        extra_args=tuple(ctx.args),
    )
    log_path = cfg.var_dir / "vllm" / f"server-{spec.port}.log"
    # Ctrl-C and `kill` both stop vLLM cleanly, even when a shell started us with SIGINT ignored (`&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    server = None
    try:
        started = time.monotonic()
        server = start_server(spec, log_path, console)
        ready = time.monotonic() - started
        console.print(
            f"[green]vLLM is serving[/] {name} at {spec.url} (ready in {ready:.0f} s; log: {log_path})\n"
            f"generate with it: prefloop --set generation.vllm_url={spec.url} "
            "generate --backend vllm-server ...\nCtrl-C stops it.",
            highlight=False,
        )
        code = server.process.wait()
        raise PrefloopError(
            f"the vLLM server exited with code {code}; full log: {log_path}\n{server.log_tail()}"
        )
    except KeyboardInterrupt:
        console.print("stopping vLLM ...")
    finally:
        if server is not None:
            code = server.stop()
            console.print(f"vLLM stopped (exit code {code})")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
    app.command(
        "serve-model",
        help=SERVE_HELP,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(serve_model)
