"""CLI: ``prefloop generate`` — step 1 of a round: candidates for every prompt, and the pairs to label."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()


def generate(
    ctx: typer.Context,
    round_id: Annotated[
        int, typer.Option("--round", help="Round number the candidates and pairs belong to (0 = base).")
    ],
    policy: Annotated[
        str,
        typer.Option(
            help="Who writes: base, latest (the highest round-N adapter, else base), or a version name."
        ),
    ] = "base",
    n: Annotated[
        int | None, typer.Option("--n", help="Candidates per prompt (default: generation.n).")
    ] = None,
    split: Annotated[str, typer.Option(help="Prompts to generate for: train or eval.")] = "train",
    purpose: Annotated[
        str | None,
        typer.Option(help="Pairs are for 'train' or 'eval' labelling (default: same as --split)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="auto (vLLM if it can run, else transformers), vllm, vllm-server or transformers "
            "(default: generation.backend)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Base model for the 'base' policy: smollm2-135m (offline default), tiny, a local "
            "directory, or a hub name such as Qwen/Qwen2.5-0.5B-Instruct (default: model.base)."
        ),
    ] = None,
    pairs: Annotated[
        bool, typer.Option("--pairs/--no-pairs", help="Queue pairs of the new candidates for labelling.")
    ] = True,
    labels: Annotated[
        int | None,
        typer.Option(
            "--labels",
            min=1,
            help="Queue this many train pairs, the pair selection's first (default: "
            "labelling.labels_per_round; unset: every pair, ranked).",
        ),
    ] = None,
    missing_only: Annotated[
        bool,
        typer.Option(
            "--missing-only",
            help="Only prompts with no candidates of this policy in this round (to finish a run).",
        ),
    ] = False,
) -> None:
    """Sample candidates with the policy, store them (deduplicated per prompt and policy) and queue
    their pairs in the order of labelling.pair_selection (the app serves the first first); at most
    generation.pairs_per_prompt per prompt and --labels in all. Nothing is stored if it fails."""
    from core.errors import PrefloopError
    from generation.api import generate_candidates
    from labelling.selection import rank_pairs
    from prefloop.commands.train import with_label_budget
    from prefloop.state import state
    from storage.models import Purpose, Split

    if split not in ("train", "eval"):
        raise PrefloopError(f"--split {split!r}: use train or eval")
    if purpose not in (None, "train", "eval"):
        raise PrefloopError(f"--purpose {purpose!r}: use train or eval")
    st = state(ctx)
    config = with_label_budget(st.config, labels)
    if model:
        config = config.model_copy(update={"model": config.model.model_copy(update={"base": model})})
    summary = generate_candidates(
        st.engine,
        config,
        round_id=round_id,
        policy=policy,
        split=Split(split),
        n=n,
        purpose=Purpose(purpose or split),
        pairs=rank_pairs if pairs else None,
        backend=backend,
        missing_only=missing_only,
    )
    s = summary
    console.print(
        f"round {round_id}, policy {s.policy}, backend {s.backend}: {s.prompts} prompts, "
        f"{s.generated} texts -> {s.candidates_added} candidates added, "
        f"{s.duplicates_dropped} duplicates dropped"
        + (f", {s.empty_dropped} empty dropped" if s.empty_dropped else "")
        + "\n"
        f"  {s.pairs_queued} pairs queued"
        + (f" ({s.selection} selection, {s.selection_seconds:.1f} s)" if s.selection else "")
        + f"; {s.tokens} tokens in {s.seconds:.1f} s "
        f"({s.tokens_per_s:.0f} tokens/s, {s.candidates_per_s:.1f} candidates/s)"
        + (f"; {s.truncated} cut at max_new_tokens" if s.truncated else "")
        + (f"; {s.unpaired} cut off or looping, left out of pairs" if s.unpaired else ""),
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to ``app``."""
    app.command("generate")(generate)
