"""CLI: `prefloop simulate`: label pending pairs with a rule-based oracle (dry runs, the loop test)."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(soft_wrap=True)  # long names and paths stay on one line (greppable logs)


class PurposeFilter(StrEnum):
    train = "train"
    eval = "eval"
    all = "all"


def simulate(
    ctx: typer.Context,
    oracle: Annotated[
        str,
        typer.Option(
            "--oracle",
            help="A built-in (length-band, keywords, shorter, number), MODULE:FUNC, or path/to/file.py:FUNC; "
            "FUNC(prompt, a, b) returns 'a', 'b' or 'tie'.",
        ),
    ],
    annotator: Annotated[
        str | None,
        typer.Option(help="Name of the simulated annotator (default: sim:ORACLE, +noiseP with --noise)."),
    ] = None,
    purpose: Annotated[
        PurposeFilter, typer.Option(help="Which pending pairs to label: train, eval, or all.")
    ] = PurposeFilter.all,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many judgments.")] = None,
    noise: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Flip this share of decisive answers (a careless human)."),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
) -> None:
    """Label pending pairs with an oracle, through the same assignment queue people use.

    The annotator is stored as *simulated*, so reports and exports keep its labels apart from human ones.
    Use it for a dry run of a new setup before people are paid to label.
    """
    from labelling.oracles import load_oracle, with_noise
    from labelling.simulate import default_annotator_name
    from labelling.simulate import simulate as run_simulation
    from prefloop.state import state
    from storage.models import Purpose

    st = state(ctx)
    judge = with_noise(load_oracle(oracle), noise, random.Random(seed))
    name = annotator or default_annotator_name(oracle, noise)
    wanted = None if purpose is PurposeFilter.all else Purpose(purpose.value)
    with Progress(
        TextColumn("[bold]simulate[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(name, total=None)
        summary = run_simulation(
            st.engine,
            judge,
            oracle,
            annotator=name,
            settings=st.config.annotate,
            purpose=wanted,
            limit=limit,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if not summary.judged:
        console.print(f"{name}: no pending {purpose.value} pairs for this annotator; nothing to do.")
        return
    decisive = summary.choices["a"] + summary.choices["b"]
    left = f"{summary.left_chosen / decisive:.0%}" if decisive else "-"
    kinds = ", ".join(f"{n} {p}" for p, n in sorted(summary.purposes.items()))
    console.print(
        f"{name}: judged {summary.judged} pairs ({kinds}) in {summary.seconds:.1f} s — "
        f"a {summary.choices['a']}, b {summary.choices['b']}, tie {summary.choices['tie']}; "
        f"left chosen in {left} of decisive; {summary.remaining} still pending for this annotator."
    )


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
    app.command()(simulate)
