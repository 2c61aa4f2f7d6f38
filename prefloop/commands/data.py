"""Data in and out: init, prompts import, labels import, annotators, export, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from storage.parsing import LABEL_FORMATS
from storage.templates import TEMPLATES

console = Console(soft_wrap=True)  # summary lines stay whole lines (greppable, copyable)

prompts_app = typer.Typer(help="Prompts: the inputs candidates are generated for.", no_args_is_help=True)
annotators_app = typer.Typer(help="People (and simulated annotators) who judge pairs.", no_args_is_help=True)
labels_app = typer.Typer(
    help="Existing preference labels (pairs already judged elsewhere).", no_args_is_help=True
)

TemplateOption = Annotated[
    str | None,
    typer.Option(
        "--template",
        "-t",
        help=f"Turn each raw input into the prompt text: a template name ({', '.join(TEMPLATES)}) "
        "or a text containing {idea}. Use the same one for prompts and labels so an idea is one prompt.",
    ),
]
SplitOption = Annotated[
    str | None,
    typer.Option(
        "--split",
        help="Put every NEW prompt of this file in 'train' or 'eval' instead of the hash-based split "
        "(about data.eval_share eval). Existing prompts keep theirs.",
    ),
]


def _check_split(split: str | None) -> None:
    from core.errors import PrefloopError

    if split not in (None, "train", "eval"):
        raise PrefloopError(f"--split {split!r}: use train or eval")


def init(ctx: typer.Context) -> None:
    """Create the database (or upgrade its schema to the latest version, keeping all data)."""
    from prefloop.state import state

    st = state(ctx)
    st.engine  # noqa: B018  (opening the engine runs the migrations)
    console.print(f"database ready: {st.config.db}")


@prompts_app.command("import")
def prompts_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV (with --column), JSONL/JSON (strings or objects) or .txt.")
    ],
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="CSV column / JSON field with the text (default: the only CSV column, or 'prompt'/'text').",
        ),
    ] = None,
    template: TemplateOption = None,
    split: SplitOption = None,
    source: Annotated[
        str | None, typer.Option(help="Provenance stored on each prompt (default: file name).")
    ] = None,
) -> None:
    """Add one prompt per row; normalised duplicates are skipped and counted; ~10% are held out as eval."""
    from prefloop.state import state
    from storage.imports import import_prompts

    _check_split(split)
    st = state(ctx)
    result = import_prompts(
        st.engine,
        file,
        column=column,
        template=template,
        split=split,
        source=source,
        eval_share=st.config.data.eval_share,
    )
    console.print(
        f"{file}: {result.added} prompts added "
        f"(train {result.by_split['train']}, eval {result.by_split['eval']}), "
        f"{result.duplicates} duplicates skipped"
    )


@labels_app.command("import")
def labels_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A labels file (see --format).")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="pairs-csv (the seed's idea,title_a,title_b,title_b_preferred), sharegpt or alpaca "
            "(LLaMA-Factory ranking JSON), trl (prompt/chosen/rejected JSONL). Default: from the file.",
        ),
    ] = None,
    template: TemplateOption = None,
    split: SplitOption = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Name of the labels source (default: the file name); its judgments are by "
            "'imported:<source>'. Importing a source again revises its labels; another file with the "
            "same name needs its own --source.",
        ),
    ] = None,
) -> None:
    """Import judged pairs as train comparisons + judgments by annotator 'imported:<source>'."""
    from core.errors import PrefloopError
    from prefloop.state import state
    from storage.imports import import_labels

    _check_split(split)
    if format is not None and format not in LABEL_FORMATS:
        raise PrefloopError(f"--format {format!r}: use one of {', '.join(LABEL_FORMATS)}")
    st = state(ctx)
    with console.status(f"importing {file} ..."):
        r = import_labels(
            st.engine,
            file,
            format=format,
            template=template,
            split=split,
            eval_share=st.config.data.eval_share,
            source=source,
        )
    new = r.prompts.by_split
    console.print(
        f"{file} ({r.format}): {r.rows} labels -> {r.judgments_added} judgments by {r.annotator}\n"
        f"  added {r.prompts.added} prompts (train {new['train']}, eval {new['eval']}), "
        f"{r.candidates_added} candidates, {r.comparisons_added} comparisons; "
        f"{r.duplicates} duplicate labels skipped, {r.revised} revised"
    )


@annotators_app.command("add")
def annotators_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The name they sign in with.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="May see progress of everyone and run rounds.")
    ] = False,
) -> None:
    """Add an annotator and print their sign-in token ONCE (only a salted hash is stored)."""
    from prefloop.state import state
    from storage.auth import create_annotator
    from storage.db import session_scope
    from storage.models import Role

    with session_scope(state(ctx).engine, write=True) as session:
        token = create_annotator(session, name, Role.admin if admin else Role.annotator)
    console.print(f"added {'admin' if admin else 'annotator'} {name!r}; token (shown only now, keep it):")
    print(token)


@annotators_app.command("revoke")
def annotators_revoke(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Who loses access.")]
) -> None:
    """Remove an annotator's token and end their open sessions at their next click (judgments stay)."""
    from prefloop.state import state
    from storage.auth import revoke
    from storage.db import session_scope

    with session_scope(state(ctx).engine, write=True) as session:
        revoke(session, name)
    console.print(f"revoked {name!r}: token removed, sessions ended; `prefloop annotators rotate` re-admits")


@annotators_app.command("rotate")
def annotators_rotate(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Whose token to replace.")]
) -> None:
    """Issue a new token and print it ONCE; the old token and every open session stop working."""
    from prefloop.state import state
    from storage.auth import rotate
    from storage.db import session_scope

    with session_scope(state(ctx).engine, write=True) as session:
        token = rotate(session, name)
    console.print(f"new token for {name!r} (shown only now, keep it; the old one no longer works):")
    print(token)


@annotators_app.command("set-role")
def annotators_set_role(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Whose role to change.")],
    role: Annotated[str, typer.Argument(help="annotator or admin.")],
) -> None:
    """Make someone an admin or an annotator; their open pages follow at the next click."""
    from core.errors import PrefloopError
    from prefloop.state import state
    from storage.auth import set_role
    from storage.db import session_scope
    from storage.models import Role

    if role not in {r.value for r in Role}:
        raise PrefloopError(f"role {role!r}: expected one of {', '.join(r.value for r in Role)}")
    with session_scope(state(ctx).engine, write=True) as session:
        set_role(session, name, Role(role))
    console.print(f"{name!r} is now {role}")


@annotators_app.command("list")
def annotators_list(ctx: typer.Context) -> None:
    """Every annotator with role, kind and number of current judgments."""
    from prefloop.state import state
    from storage.db import session_scope
    from storage.queries import annotators_with_judgments

    table = Table("name", "role", "kind", "judgments")
    with session_scope(state(ctx).engine) as session:
        for a, judgments in annotators_with_judgments(session):
            table.add_row(a.name, a.role.value, a.kind.value, str(judgments))
    console.print(table)


def export(
    ctx: typer.Context,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="trl (train/validation JSONL + datasets DatasetDict, split by prompt), llamafactory "
            "(sharegpt ranking JSON + dataset_info.json), judgments (every raw decision), arena (eval "
            "judgments as Chatbot Arena battles).",
        ),
    ] = "trl",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (default: the database's work folder/export/FORMAT)."
        ),
    ] = None,
    validation_share: Annotated[
        float | None,
        typer.Option(
            help="trl: share of train prompts held out for validation (default: train.validation_share)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="trl: seed of the validation prompt choice (default: train.seed).")
    ] = None,
) -> None:
    """Write preference data: only train pairs of train-split prompts, majority of current judgments.

    Ties, both-bad, skips and pairs without a majority are left out and counted (trl with
    train.use_ties: a tie or both-bad goes to the train rows both ways); so are all pairs of
    eval-split prompts (kept for the head-to-head evaluation). Same database -> byte-identical files.
    """
    from core.errors import PrefloopError
    from prefloop.state import state
    from storage import exports

    if format not in exports.EXPORT_FORMATS:
        raise PrefloopError(f"--format {format!r}: use one of {', '.join(exports.EXPORT_FORMATS)}")
    st = state(ctx)
    out = out or st.config.var_dir / "export" / format
    if format == "arena":
        from storage.arena import export_arena

        path = out / "arena_battles.jsonl"
        console.print(f"arena: {export_arena(st.engine, path)} battles (current eval judgments) -> {path}")
        return
    if format == "trl":
        share = st.config.train.validation_share if validation_share is None else validation_share
        if not 0 <= share < 1:
            raise PrefloopError(f"--validation-share {share}: use a number from 0 to below 1")
        with console.status("exporting (TRL rows + datasets DatasetDict) ..."):
            result = exports.export_trl(
                st.engine,
                out,
                validation_share=share,
                seed=st.config.train.seed if seed is None else seed,
                ties=st.config.train.use_ties,
            )
        console.print(
            f"trl: {result.n_train} train pairs ({result.n_train_prompts} prompts"
            + (f"; {result.n_tie_rows} rows from ties, both ways" if result.n_tie_rows else "")
            + "), "
            f"{result.n_validation} validation pairs ({result.n_validation_prompts} prompts) -> {out}"
        )
    elif format == "llamafactory":
        result = exports.export_llamafactory(st.engine, out)
        console.print(f"llamafactory: {result.n_train} pairs -> {result.paths['data']} (+ dataset_info.json)")
    else:
        result = exports.export_judgments(st.engine, out)
        console.print(f"judgments: {result.n_train} decisions -> {result.paths['data']}")
    if result.dropped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in result.dropped.items())
        console.print(f"left out: {reasons}")
    console.print(f"data hash: {result.data_hash}")


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Counts: prompts by split, candidates, pairs, judgments by round/purpose/annotator, model versions."""
    from prefloop.state import state
    from storage.status import collect_status

    info = collect_status(state(ctx).engine)
    if as_json:
        print(json.dumps(info, sort_keys=True))
        return
    _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    overview = Table(title="prefloop status", show_header=True)
    for col in ("", "train", "eval"):
        overview.add_column(col, justify="right" if col else "left")
    for name in ("prompts", "comparisons", "judgments"):
        overview.add_row(name, str(info[name]["train"]), str(info[name]["eval"]))
    console.print(overview)
    console.print(
        f"candidates: {info['candidates']}   superseded judgments: {info['superseded_judgments']}   "
        f"rounds: {', '.join(map(str, info['rounds'])) or 'none'}"
    )
    console.print(f"model versions: {', '.join(info['model_versions']) or 'none'}")
    for name in ("annotators", "training_runs"):
        counts = ", ".join(f"{k} {v}" for k, v in info[name].items())
        console.print(f"{name.replace('_', ' ')}: {counts}")
    by = Table(title="current judgments by round / purpose / annotator")
    for col in ("round", "purpose", "annotator", "kind", "judgments"):
        by.add_column(col, justify="right" if col in ("round", "judgments") else "left")
    for row in info["judgments_by"]:
        rnd = "imported" if row["round"] is None else str(row["round"])
        by.add_row(rnd, row["purpose"], row["annotator"], row["kind"], str(row["count"]))
    console.print(by)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.add_typer(prompts_app, name="prompts")
    app.add_typer(labels_app, name="labels")
    app.add_typer(annotators_app, name="annotators")
    app.command()(export)
    app.command()(status)
