"""CLI: ``prefloop train`` (export, DPO, register) and ``prefloop train-round`` (= ``make train-round``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from loop.round import RoundSummary

console = Console()

CONFIG_OPTION = typer.Option(
    "--config",
    "-c",
    help="YAML config file (e.g. configs/qwen2.5-0.5b-gpu.yaml); same as --config before the command.",
)
SHOWN_METRICS = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen")


def _config_for(ctx: typer.Context, config_file: Path | None):
    """The session's config, or ``--config FILE`` given after the subcommand (same ``--set`` overrides)."""
    from core.config import load_config
    from prefloop.state import state

    st = state(ctx)
    if config_file is not None:
        root = ctx.find_root().params
        st.config = load_config(config_file, root.get("overrides") or [], root.get("db"))
    return st


def print_summary(summary: RoundSummary) -> None:
    """Step 6: labels used and dropped, training metrics, pairs queued, seconds per stage."""
    if summary.outcome == "no-new-labels":
        console.print(f"[bold yellow]{summary.message}[/]")
        return
    table = Table(
        title=f"round {summary.round_number}: {summary.version} ({summary.outcome})", show_header=False
    )
    table.add_column(style="bold")
    table.add_column()
    if summary.n_train or summary.outcome == "trained":
        dropped = ", ".join(f"{reason} {count}" for reason, count in summary.dropped.items()) or "none"
        ties = f" ({summary.n_tie_rows} of them ties, both ways)" if summary.n_tie_rows else ""
        used = f"{summary.n_train} train{ties} + {summary.n_validation} validation pairs"
        table.add_row("labels used", used)
        table.add_row("labels left out", dropped)
    for key in SHOWN_METRICS:
        if key in summary.final_metrics:
            table.add_row(key, f"{summary.final_metrics[key]:.4f}")
    if summary.pairs_per_second:
        table.add_row("training speed", f"{summary.pairs_per_second:.1f} pairs/s")
    if summary.adapter_path:
        table.add_row("adapter", summary.adapter_path)
    if summary.chosen_step and summary.chosen_step[0] != summary.chosen_step[1]:
        chosen, last = summary.chosen_step
        table.add_row(
            "health gate", f"step {chosen} of {last} kept: the later steps' output health was flagged"
        )
    if summary.stage_seconds.get("generate-train") is not None:
        table.add_row("train pairs queued", f"{summary.train_pairs_queued} (round {summary.round_number})")
    if summary.selection:
        table.add_row("pair selection", f"{summary.selection[0]} ({summary.selection[1]:.1f} s)")
    for baseline, count in summary.eval_pairs.items():
        table.add_row(f"eval pairs vs {baseline}", str(count))
    stages = ", ".join(f"{stage} {sec:.1f}" for stage, sec in summary.stage_seconds.items())
    table.add_row("seconds", f"{stages} | total {summary.total_seconds:.1f}")
    console.print(table)
    if summary.message:
        console.print(summary.message.strip())


def train(
    ctx: typer.Context,
    config_file: Annotated[Path | None, CONFIG_OPTION] = None,
) -> None:
    from loop.round import train_only

    st = _config_for(ctx, config_file)
    print_summary(train_only(st.engine, st.config, echo=console.print))


LABELS_OPTION = typer.Option(
    "--labels",
    min=1,
    help="Queue this many train pairs for the next round, the pair selection's first "
    "(default: labelling.labels_per_round; unset: every pair, ranked).",
)


def with_label_budget(config, labels: int | None):
    """``config`` with ``labelling.labels_per_round`` = ``labels`` (unchanged when None)."""
    if labels is None:
        return config
    labelling = config.labelling.model_copy(update={"labels_per_round": labels})
    return config.model_copy(update={"labelling": labelling})


def train_round(
    ctx: typer.Context,
    config_file: Annotated[Path | None, CONFIG_OPTION] = None,
    labels: Annotated[int | None, LABELS_OPTION] = None,
) -> None:
    from loop.round import train_round as run_round

    st = _config_for(ctx, config_file)
    print_summary(run_round(st.engine, with_label_budget(st.config, labels), echo=console.print))


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
    app.command(
        "train",
        help=(
            "Export all train labels, train a LoRA adapter with DPO and register it as model version "
            '"round-N". '
            "\n\nKnobs: the `train` config section with LLaMA-Factory names (pref_beta, pref_loss, pref_ftx, "
            "lora_rank, ...), e.g. --set train.learning_rate=1e-4. Several processes or GPUs: "
            "--set train.num_processes=K runs `accelerate launch`. "
            "\n\nNothing changes when there are no new labels since the last version."
        ),
    )(train)
    app.command(
        "train-round",
        help=(
            "One round: export labels, train, register, generate the next round's pairs with the new "
            "adapter, "
            "queue blind eval pairs (new vs base, and vs the previous round), print a summary with seconds "
            "per stage. "
            "\n\nSafe to re-run: an interrupted round is completed without duplicates; with no new labels "
            "since the last round it says so and changes nothing."
        ),
    )(train_round)
