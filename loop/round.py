"""``prefloop train`` (stages 1-3) and ``prefloop train-round`` (stages 1-6): labels in, next round queued.

1. export all train-purpose labels (TRL format, validation split by prompt);
2. train a LoRA adapter with DPO (in-process, or ``accelerate launch`` for several processes), keeping it
   at ``train.checkpoints`` steps, and keep the latest whose output health is unflagged (loop.health_gate);
3. register it as model version "round-N" (atomic directory + one transaction, see training.registry);
4. generate round N's train candidates and pairs with the new adapter;
5. generate eval samples on the held-out prompts (base samples once, reused) and queue blind eval pairs
   new-vs-base, and new-vs-previous from round 2 on;
6. summarise (labels used/dropped, metrics, pairs queued, seconds per stage).

Stage 4 ranks the new pairs by ``labelling.pair_selection`` (``uncertain`` scores them with the new adapter)
and queues ``labelling.labels_per_round`` of them: a budget of on-policy labels per round.

Idempotent: each stage checks what the database already holds, so a run killed anywhere is completed by
the next one without duplicates, and a run with no new labels since the last round changes nothing.
One at a time: both commands hold the database's round lock (``storage.locks``, in its work folder) from
start to end, so a second run exits at once naming the holder instead of reusing its round number,
staging folder or export.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from core.config import Config
from labelling.selection import rank_pairs
from loop.health_gate import gate
from storage import queries
from storage.db import session_scope
from storage.locks import Lock, exclusive
from storage.models import Candidate, ModelVersion, Purpose, Split
from storage.repo import get_or_create_comparison
from storage.versions import BASE, latest_adapter, round_of, version_name, version_named
from training import registry
from training.pipeline import LabelExport, export_labels, publish, train_adapter

Echo = Callable[[str], None]
ROUND_LOCK = "round.lock"  # in the database's work folder


@dataclass
class RoundSummary:
    round_number: int
    version: str
    outcome: str  # "trained", "resumed" (finished an interrupted round), "no-new-labels"
    message: str = ""
    n_train: int = 0
    n_validation: int = 0
    n_tie_rows: int = 0  # of n_train (train.use_ties)
    dropped: dict[str, int] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    pairs_per_second: float | None = None
    train_pairs_queued: int = 0
    selection: tuple[str, float] | None = None  # labelling.pair_selection and its seconds (scoring, ranking)
    eval_pairs: dict[str, int] = field(default_factory=dict)  # baseline version name -> pairs queued
    stage_seconds: dict[str, float] = field(default_factory=dict)
    adapter_path: str | None = None
    training_run_id: int | None = None
    chosen_step: tuple[int, int] | None = None  # (the published adapter's step, the run's last step)

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())


class StageClock:
    """Seconds per named stage, printed as each stage starts."""

    def __init__(self, summary: RoundSummary, echo: Echo) -> None:
        self.summary, self.echo = summary, echo

    @contextmanager
    def __call__(self, stage: str, what: str) -> Iterator[None]:
        self.echo(f"-- {stage}: {what}")
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.summary.stage_seconds[stage] = self.summary.stage_seconds.get(stage, 0.0) + seconds


# -- the whole round ---------------------------------------------------------------------------------


def train_round(engine: Engine, config: Config, echo: Echo = print) -> RoundSummary:
    """``prefloop train-round``: finish an interrupted round, else train the next one and queue its pairs."""
    with exclusive(engine, config.var_dir / ROUND_LOCK, what="a round") as lock:
        _echo_takeover(lock, echo)
        registry.remove_stale_staging(registry.adapters_root(config.var_dir))
        latest, number = next_round(engine)
        if latest is not None and not round_complete(engine, config, latest):
            summary = RoundSummary(round_number=round_of(latest.name), version=latest.name, outcome="resumed")
            lock.describe(f"round {summary.round_number}")
            summary.message = (
                f"{latest.name} is registered but its round did not finish: resuming at generation."
            )
            summary.adapter_path, summary.training_run_id = latest.adapter_path, latest.training_run_id
            echo(summary.message)
            version = latest
        else:
            lock.describe(f"round {number}")
            summary = RoundSummary(round_number=number, version=version_name(number), outcome="trained")
            version = train_version(
                engine, config, latest=latest, clock=StageClock(summary, echo), summary=summary
            )
            if version is None:
                return summary
        clock = StageClock(summary, echo)
        generate_stage(engine, config, version, clock, summary)
        eval_stage(engine, config, version, clock, summary)
        return summary


def train_only(engine: Engine, config: Config, echo: Echo = print) -> RoundSummary:
    """``prefloop train``: stages 1-3 (a new version when the labels changed)."""
    with exclusive(engine, config.var_dir / ROUND_LOCK, what="a round") as lock:
        _echo_takeover(lock, echo)
        registry.remove_stale_staging(registry.adapters_root(config.var_dir))
        latest, number = next_round(engine)
        lock.describe(f"round {number}")
        summary = RoundSummary(round_number=number, version=version_name(number), outcome="trained")
        train_version(engine, config, latest=latest, clock=StageClock(summary, echo), summary=summary)
        return summary


def _echo_takeover(lock: Lock, echo: Echo) -> None:
    if lock.previous:
        echo(
            f"took over the round lock of pid {lock.previous.get('pid')} "
            f"(since {lock.previous.get('since')}), which ended without releasing it"
        )


# -- stages 1-3: export, train, register ---------------------------------------------------------------


def train_version(
    engine: Engine, config: Config, *, latest: ModelVersion | None, clock: StageClock, summary: RoundSummary
) -> ModelVersion | None:
    """Stages 1-3. Returns the new version, or None when the labels did not change since ``latest``."""
    name = summary.version
    previous_hash = _read(engine, queries.training_data_hash, latest)
    with clock("export", "exporting train-purpose labels"):
        labels = export_labels(engine, config, name, previous_hash=previous_hash)
    summary.n_train, summary.n_validation, summary.n_tie_rows, summary.dropped = (
        labels.n_train,
        labels.n_validation,
        labels.n_tie_rows,
        labels.dropped,
    )
    if not labels.changed:
        summary.outcome = "no-new-labels"
        summary.message = (
            f"no new labels since {latest.name} (the same {labels.n_train} + {labels.n_validation} pairs, "
            f"data hash {labels.data_hash[:12]}); nothing changed"
        )
        return None
    continues = config.train.round_policy == "continue" and latest is not None
    parent = latest if continues else base_version(engine, config)
    run_id = registry.start_run(
        engine,
        round_id=summary.round_number,
        config=_run_config(config, parent, labels),
        data_hash=labels.data_hash,
    )
    summary.training_run_id = run_id
    rows: list[dict[str, Any]] = []

    def on_log(row: dict[str, Any]) -> None:  # the dashboard follows a live run
        rows.append(row)
        registry.save_metrics(engine, run_id, rows)

    try:
        with registry.staging_dir(registry.adapters_root(config.var_dir), name) as staging:
            with clock("train", f"training {name} on {labels.n_train} pairs (parent {parent.name})"):
                title = f"{name} (DPO + LoRA)"
                result = train_adapter(
                    config, labels, staging=staging, parent=parent, title=title, on_log=on_log
                )
            with clock("health", f"checking the output health of {name}'s checkpoints"):
                checked = gate(engine, config, staging, name=name, last=result.steps, echo=clock.echo)
                result.extra["health_gate"] = checked.as_dict()
                summary.chosen_step = (checked.chosen, checked.last)
            with clock("register", f"registering {name}"):
                version = publish(
                    engine, config, run_id=run_id, staging=staging, name=name, parent=parent, result=result
                )
    except BaseException as exc:
        registry.fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    summary.final_metrics, summary.pairs_per_second = result.final, result.pairs_per_second
    summary.adapter_path = version.adapter_path
    return version


def _run_config(config: Config, parent: ModelVersion, labels: LabelExport) -> dict[str, Any]:
    return {
        "round_policy": config.train.round_policy,
        "parent": parent.name,
        "model": config.model.model_dump(mode="json"),
        "train": config.train.model_dump(mode="json"),
        "export": {
            "n_train": labels.n_train,
            "n_validation": labels.n_validation,
            "n_tie_rows": labels.n_tie_rows,
            "dropped": labels.dropped,
        },
    }


# -- stages 4-5: generation and eval pairs -------------------------------------------------------------


def generate_stage(engine: Engine, config: Config, version: ModelVersion, clock: StageClock, summary) -> None:
    """Stage 4: round N's train candidates + pairs from the new adapter (skipped if already there)."""
    number = summary.round_number
    with clock("generate-train", f"generating round {number} train candidates with {version.name}"):
        train_ids = _read(engine, queries.prompt_ids, Split.train)
        if train_ids and not _read(engine, queries.candidates_by_prompt, version.id, train_ids):
            generated = _generate(
                engine,
                config,
                round_id=number,
                policy=version.name,
                split=Split.train,
                n=config.generation.n,
                purpose=Purpose.train,
                pairs=rank_pairs,
                prompt_ids=None,
            )
            summary.selection = (generated.selection, generated.selection_seconds)
        summary.train_pairs_queued = _read(engine, queries.comparison_count, number, Purpose.train)


def eval_stage(engine: Engine, config: Config, version: ModelVersion, clock: StageClock, summary) -> None:
    """Stage 5: eval samples on held-out prompts and blind pairs vs base (and vs the previous round)."""
    number = summary.round_number
    samples = config.round.eval_samples_per_model
    with clock("generate-eval", f"eval samples and blind pairs for {version.name}"):
        eval_ids = _read(engine, queries.prompt_ids, Split.eval)
        if not eval_ids:
            summary.message += " No eval-split prompts: no eval pairs queued."
            return
        new = ensure_samples(engine, config, version, eval_ids, n=samples, round_id=number)
        for baseline in baselines(engine, config, number):
            have = ensure_samples(
                engine, config, baseline, eval_ids, n=samples, round_id=round_of(baseline.name) or 0
            )
            summary.eval_pairs[baseline.name] = queue_eval_pairs(
                engine,
                new,
                have,
                baseline_name=baseline.name,
                round_number=number,
                per_prompt=math.ceil(config.round.eval_pairs_per_baseline / len(eval_ids)),
                seed=config.generation.seed,
            )


def ensure_samples(
    engine: Engine, config: Config, version: ModelVersion, prompt_ids: list[int], *, n: int, round_id: int
) -> dict[int, list[int]]:
    """Eval samples of ``version`` on the prompts; generates only for prompts that have none yet."""
    have = _read(engine, queries.candidates_by_prompt, version.id, prompt_ids)
    missing = [pid for pid in prompt_ids if pid not in have]
    if missing:
        _generate(
            engine,
            config,
            round_id=round_id,
            policy=version.name,
            split=Split.eval,
            n=n,
            purpose=Purpose.eval,
            prompt_ids=missing,
        )
        have = _read(engine, queries.candidates_by_prompt, version.id, prompt_ids)
    return have


def pair_seed(seed: int, round_number: int, prompt_id: int, baseline: str) -> int:
    """A stable seed per (round, prompt, baseline), so a re-run draws the same pairs."""
    digest = hashlib.sha256(f"{seed}:{round_number}:{prompt_id}:{baseline}".encode()).hexdigest()
    return int(digest[:12], 16)


def queue_eval_pairs(
    engine: Engine,
    new: dict[int, list[int]],
    baseline: dict[int, list[int]],
    *,
    baseline_name: str,
    round_number: int,
    per_prompt: int,
    seed: int,
) -> int:
    """Blind eval pairs new-vs-baseline, ``per_prompt`` per prompt, in one transaction; returns the count."""
    from labelling.pairs import cross_pairs

    queued = 0
    with session_scope(engine, write=True) as session:
        for prompt_id in sorted(set(new) & set(baseline)):
            picks = cross_pairs(
                new[prompt_id],
                baseline[prompt_id],
                per_prompt,
                pair_seed(seed, round_number, prompt_id, baseline_name),
            )
            for new_id, base_id in picks:
                get_or_create_comparison(
                    session,
                    session.get(Candidate, new_id),
                    session.get(Candidate, base_id),
                    Purpose.eval,
                    round_id=round_number,
                )
                queued += 1
    return queued


# -- what the database already holds -------------------------------------------------------------------


def _read(engine: Engine, query: Callable[..., Any], *args: Any) -> Any:
    """One read-only query of ``storage.queries`` / ``storage.versions`` in its own session."""
    with session_scope(engine) as session:
        return query(session, *args)


def next_round(engine: Engine) -> tuple[ModelVersion | None, int]:
    latest = _read(engine, latest_adapter)
    return latest, (round_of(latest.name) if latest else 0) + 1


def baselines(engine: Engine, config: Config, number: int) -> list[ModelVersion]:
    """What round ``number``'s adapter is compared with: base, and the previous round's adapter if any."""
    previous = _read(engine, version_named, version_name(number - 1)) if number > 1 else None
    return [base_version(engine, config), *([previous] if previous is not None else [])]


def round_complete(engine: Engine, config: Config, version: ModelVersion) -> bool:
    """Stages 4 and 5 done for this adapter's round: its train candidates, and eval pairs against each
    baseline (each baseline's pairs are stored in one transaction, but not all baselines in one)."""
    number = round_of(version.name)
    train_ids = _read(engine, queries.prompt_ids, Split.train)
    if not _read(engine, queries.candidates_by_prompt, version.id, train_ids):
        return False
    if not _read(engine, queries.prompt_ids, Split.eval):
        return True
    return all(
        _read(engine, queries.eval_pairs_against, number, b.id) > 0 for b in baselines(engine, config, number)
    )


def base_version(engine: Engine, config: Config) -> ModelVersion:
    from generation.api import resolve_policy

    with session_scope(engine, write=True) as session:
        return resolve_policy(session, config, BASE)


def _generate(engine: Engine, config: Config, **kwargs: Any):
    from generation.api import generate_candidates

    return generate_candidates(engine, config, backend=config.generation.backend, progress=True, **kwargs)
