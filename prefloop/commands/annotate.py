"""CLI of the annotation app: ``prefloop app`` serves it, ``prefloop demo`` loads demo data (``make run``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

SEED_IDEAS = Path("data/youtube-titles/ideas.csv")
SEED_TEMPLATE = "youtube-title"
SEED_SOURCE = "demo:youtube-titles/ideas.csv"
# Round-0 candidates for this many prompts are written before the app starts (the rest in the background):
# enough pairs to label for minutes, few enough that the first real-model pair shows within a minute.
DEMO_FIRST_PROMPTS = 6


def streamlit_argv(host: str, port: int, local_user: bool = False) -> list[str]:
    """``streamlit run`` arguments: headless, no usage statistics, no file watcher, viewer toolbar, no full
    garbage collection after every script run.

    With the token-free local user (``local_user``) on a loopback address, the server accepts only
    loopback ``Host`` names (``server.allowedHosts``): a page whose own name was rebound to 127.0.0.1
    (DNS rebinding) cannot open the app's WebSocket. Without it any Host is served (a TLS proxy in front
    forwards the public name), since everyone signs in. Quiet: ``prefloop app`` prints the address
    itself, so Streamlit's welcome message and its INFO "server started" line (the same URL twice more)
    are left out; warnings and errors still print.

    ``runner.postScriptGC`` (on by default) runs ``gc.collect(2)`` after every rerun: with this process's
    imports that is ~100 ms of CPU per key press, holding the GIL while the server still has the rerun's
    last messages to send. Python's own generational collector still runs; it just does not walk the whole
    heap after every click.
    """
    from annotate_app.context import LOOPBACK_HOSTS
    from core.paths import REPO_ROOT

    script = REPO_ROOT / "annotate_app" / "main.py"
    hosts = [arg for name in LOOPBACK_HOSTS for arg in ("--server.allowedHosts", name)]
    return [
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--runner.postScriptGC",
        "false",
        "--client.toolbarMode",
        "minimal",
        *(hosts if local_user else []),
        "--logger.hideWelcomeMessage",
        "true",
        "--logger.level",
        "warning",
    ]


def app(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but localhost makes sign-in with a token mandatory."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """Start the annotation app (Annotate; Dashboard and Compare for admins) in the foreground."""
    from annotate_app.context import ENV_SCHEMA_READY, ENV_SET, bound_to_localhost
    from annotate_app.session_cookie import load_secret
    from prefloop.state import state

    st = state(ctx)
    st.engine  # noqa: B018  (migrate before serving)
    load_secret(st.config.var_dir / "app-secret")  # a broken secret file stops here, not at a sign-in
    # The app reads the exact config resolved here (file + --set + --db) as whole-section overrides.
    overrides = [f"{section}={json.dumps(values)}" for section, values in _sections(st.config).items()]
    os.environ.pop("PREFLOOP_CONFIG", None)
    os.environ[ENV_SET] = json.dumps(overrides)
    os.environ["PREFLOOP_DB"] = os.environ[ENV_SCHEMA_READY] = st.config.db
    local_user = bound_to_localhost(host) and st.config.annotate.allow_local_user
    if local_user:
        console.print("Local use: no token needed on this machine (annotate.allow_local_user).")
    else:
        console.print("Sign-in required: give each annotator a token with `prefloop annotators add NAME`.")
    console.print(f"Annotation app on http://{host}:{port}  (Ctrl-C stops it)")
    sys.stdout.flush()
    # Streamlit runs in this process, so the storage modules imported above are not imported twice.
    from streamlit.web import cli as streamlit_cli

    import annotate_app.annotate_page  # noqa: F401  (warm: the first page view needs it)

    sys.argv = streamlit_argv(host, port, local_user)
    sys.exit(streamlit_cli.main())


def _sections(config) -> dict:
    """The resolved config as ``section -> values`` (``--set section=<json mapping>`` replaces a section)."""
    data = config.model_dump(mode="json")
    return {key: value for key, value in data.items() if key not in ("db",)}


def demo(
    ctx: typer.Context,
    first: Annotated[
        int,
        typer.Option(
            min=1,
            help="Prompts whose round-0 candidates are written before this returns; the rest are written by "
            "a background `prefloop generate --missing-only` while people label.",
        ),
    ] = DEMO_FIRST_PROMPTS,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Write every prompt's candidates before returning.")
    ] = False,
) -> None:
    """Prepare demo data for `make run`: the seed video ideas as prompts, and round-0 titles from the base
    model if there are none yet. Safe to re-run: it only adds what is missing."""
    from core.paths import REPO_ROOT
    from prefloop.state import state
    from storage.db import session_scope
    from storage.imports import import_prompts
    from storage.queries import candidate_count, train_prompt_ids

    st = state(ctx)
    engine = st.engine
    ideas = REPO_ROOT / SEED_IDEAS
    result = import_prompts(
        engine, ideas, template=SEED_TEMPLATE, source=SEED_SOURCE, eval_share=st.config.data.eval_share
    )
    console.print(f"prompts: {result.added} added, {result.duplicates} already there ({SEED_IDEAS})")
    with session_scope(engine) as session:
        n_candidates = candidate_count(session)
        train_ids = train_prompt_ids(session)
    if n_candidates:
        console.print(f"candidates: {n_candidates} already there; nothing to generate")
        return
    from generation.api import generate_candidates  # heavy: torch + the base model
    from labelling.selection import rank_pairs

    now = None if wait else train_ids[:first]
    summary = generate_candidates(engine, st.config, round_id=0, prompt_ids=now, pairs=rank_pairs)
    console.print(
        f"round 0: {summary.candidates_added} candidates from {summary.prompts} prompts ({summary.policy}, "
        f"{summary.backend}), {summary.pairs_queued} pairs to label, {summary.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    if now is not None and len(train_ids) > len(now):
        log = generate_rest_in_background(st.config)
        console.print(
            f"round 0: the other {len(train_ids) - len(now)} prompts are being written in the background "
            f"(log: {log}); their pairs appear when it is done",
            highlight=False,
            soft_wrap=True,
        )


def generate_rest_in_background(config) -> Path:
    """Start ``prefloop generate --round 0 --missing-only`` with this exact config, detached from this
    process (it outlives ``prefloop demo`` and keeps running while the app serves); returns its log file.
    Its process id is in ``demo-generate.pid`` in the database's work folder."""
    import subprocess

    from core.paths import database_url

    log = config.var_dir / "demo-generate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    sets = [
        arg
        for section, values in _sections(config).items()
        for arg in ("--set", f"{section}={json.dumps(values)}")
    ]
    cmd = [sys.executable, "-m", "prefloop.cli", "--db", database_url(config.db), *sets]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "generate", "--round", "0", "--missing-only"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (config.var_dir / "demo-generate.pid").write_text(f"{proc.pid}\n")
    return log


def register(app_: typer.Typer) -> None:
    app_.command("app")(app)
    app_.command()(demo)
