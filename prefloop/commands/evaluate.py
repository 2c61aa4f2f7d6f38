"""CLI: the evaluate area: `prefloop report` and `prefloop judgments import` (see README "report")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

judgments_app = typer.Typer(
    help="Head-to-head judgments made elsewhere (Chatbot Arena battle format).", no_args_is_help=True
)


def report(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the report (default: the database's work folder/report)."
        ),
    ] = None,
) -> None:
    """Evaluate every model version on the blind eval judgments and write the report.

    Writes report.md, a self-contained report.html, report.json and PNG plots: win rates (ties as half)
    with Wilson intervals and sign-test p-values, Bradley-Terry ratings with bootstrap intervals,
    position and length bias, inter-annotator agreement, power, and output health (flagged at the top
    when past the report.* bounds). Human, simulated and imported judgments are reported separately.
    """
    from evaluation.report import write_report
    from prefloop.state import state

    st = state(ctx)
    out_dir = out or st.config.var_dir / "report"
    with console.status("computing the report (bootstrap of Bradley-Terry ratings)..."):
        data = write_report(st.engine, out_dir, st.config.report)
    for sentence in data.flags:
        console.print(f"[bold red]health:[/] {sentence}", highlight=False)
    for sentence in data.excluded:
        console.print(sentence, highlight=False)
    console.print(data.headline, highlight=False)
    console.print(f"report: {out_dir / 'report.html'} (also report.md, report.json, PNG plots)")


@judgments_app.command("import")
def judgments_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL, one battle per line: model_a, model_b, winner (model_a|model_b|tie|tie (bothbad)), "
            "judge, and prompt/response_a/response_b (or single-turn conversation_a/conversation_b)."
        ),
    ],
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Store the valid rows and list the invalid ones (line and reason) in the skipped-rows "
            "report, instead of refusing the whole file.",
        ),
    ] = False,
    skipped_report: Annotated[
        Path | None,
        typer.Option(
            "--skipped-report", help="Where --skip-invalid writes it (default: FILE.skipped.jsonl)."
        ),
    ] = None,
) -> None:
    """Import Chatbot Arena battles as eval pairs and judgments (annotator kind 'imported').

    A model name that matches an existing version is that version; any other becomes an external
    version, and the reserved names base and round-N are stored as imported:base, imported:round-N. New
    prompts are held out (split eval); battles on an existing train-split prompt are not imported. Arena
    shows model_a on the left, so that is recorded as the displayed side. The whole file is one
    transaction: a bad row changes nothing, unless --skip-invalid.
    """
    from prefloop.state import state
    from storage.arena import import_battles, write_skipped

    with console.status(f"importing {file} (one transaction)..."):
        result = import_battles(state(ctx).engine, file, skip_invalid=skip_invalid)
    if skip_invalid:
        report = skipped_report or file.with_name(file.name + ".skipped.jsonl")
        write_skipped(report, result.skipped)
        console.print(f"{len(result.skipped)} invalid rows skipped, listed in {report}", highlight=False)
    if result.renamed:
        names = ", ".join(f"{a} as {b}" for a, b in sorted(result.renamed.items()))
        console.print(
            f"reserved model names (prefloop's own versions) stored apart: {names}", highlight=False
        )
    if result.on_train_prompts:
        console.print(
            f"{result.on_train_prompts} battles ask train-split prompts: not imported as eval pairs "
            "(the policy trains on those prompts)",
            highlight=False,
        )
    console.print(
        f"{file}: {result.rows} battles: {result.judgments_added} judgments added, "
        f"{result.duplicates} already present, {result.revised} revised; "
        f"{result.prompts_added} new prompts, {result.versions_added} new model versions. "
        "Next: prefloop report",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
    app.command("report")(report)
    app.add_typer(judgments_app, name="judgments")
