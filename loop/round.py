"""``prefloop train`` (stages 1-3) and ``prefloop train-round`` (stages 1-6): labels in, next round queued.

1. export all train-purpose labels (TRL format, validation split by prompt);
2. train a LoRA adapter with DPO (in-process, or ``accelerate launch`` for several processes);
3. register it as model version "round-N" (atomic directory + one transaction, see training.registry);
4. generate round N's train candidates and pairs with the new adapter;
5. generate eval samples on the held-out prompts (base samples once, reused) and queue blind eval pairs
   new-vs-base, and new-vs-previous from round 2 on;
6. summarise (labels used/dropped, metrics, pairs queued, seconds per stage).

Idempotent: each stage checks what the database already holds, so a run killed anywhere is completed by
the next one without duplicates, and a run with no new labels since the last round changes nothing.
One at a time: both commands hold the database's round lock (``storage.locks``, in its work folder) from
start to end, so a second run exits at once naming the holder instead of reusing its round number,
staging folder or export.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import func, select

from core.config import Config
from core.errors import PrefloopError
from storage.db import session_scope
from storage.locks import Lock, exclusive
from storage.models import (
    Candidate,
    Comparison,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    TrainingRun,
    VersionKind,
)
from storage.repo import get_or_create_comparison
from storage.versions import BASE, round_of, version_name
from training import registry
from training.registry import crash_point

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
    dropped: dict[str, int] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    pairs_per_second: float | None = None
    train_pairs_queued: int = 0
    eval_pairs: dict[str, int] = field(default_factory=dict)  # baseline version name -> pairs queued
    stage_seconds: dict[str, float] = field(default_factory=dict)
    adapter_path: str | None = None
    training_run_id: int | None = None

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


# -- what the database already holds -------------------------------------------------------------------


def _base_version(engine: Engine, config: Config) -> ModelVersion:
    from generation.api import resolve_policy

    with session_scope(engine, write=True) as session:
        return resolve_policy(session, config, BASE)


def _version(engine: Engine, name: str) -> ModelVersion | None:
    with session_scope(engine) as session:
        return session.exec(select(ModelVersion).where(ModelVersion.name == name)).first()


def _prompt_ids(engine: Engine, split: Split) -> list[int]:
    with session_scope(engine) as session:
        return list(session.exec(select(Prompt.id).where(Prompt.split == split).order_by(Prompt.id)))


def candidates_by_prompt(engine: Engine, version_id: int, prompt_ids: list[int]) -> dict[int, list[int]]:
    """Candidate ids of one version per prompt (only prompts that have some)."""
    found: dict[int, list[int]] = {}
    if not prompt_ids:
        return found
    with session_scope(engine) as session:
        rows = session.exec(
            select(Candidate.prompt_id, Candidate.id)
            .where(Candidate.model_version_id == version_id, Candidate.prompt_id.in_(prompt_ids))
            .order_by(Candidate.id)
        )
        for prompt_id, cand_id in rows:
            found.setdefault(prompt_id, []).append(cand_id)
    return found


def _eval_pairs_against(engine: Engine, number: int, baseline: ModelVersion) -> int:
    """Round ``number``'s eval pairs that have a candidate of ``baseline`` on either side."""
    from sqlalchemy import or_
    from sqlalchemy.orm import aliased

    side_a, side_b = aliased(Candidate), aliased(Candidate)
    with session_scope(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(Comparison)
            .join(side_a, side_a.id == Comparison.candidate_a_id)
            .join(side_b, side_b.id == Comparison.candidate_b_id)
            .where(
                Comparison.round_id == number,
                Comparison.purpose == Purpose.eval,
                or_(side_a.model_version_id == baseline.id, side_b.model_version_id == baseline.id),
            )
        ).one()


def _comparison_count(engine: Engine, round_id: int, purpose: Purpose) -> int:
    with session_scope(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(Comparison)
            .where(Comparison.round_id == round_id, Comparison.purpose == purpose)
        ).one()


def _baselines(engine: Engine, config: Config, number: int) -> list[ModelVersion]:
    """What round ``number``'s adapter is compared with: base, and the previous round's adapter if any."""
    previous = _version(engine, version_name(number - 1)) if number > 1 else None
    return [_base_version(engine, config), *([previous] if previous is not None else [])]


def round_complete(engine: Engine, config: Config, version: ModelVersion) -> bool:
    """Stages 4 and 5 done for this adapter's round: its train candidates, and eval pairs against each
    baseline (each baseline's pairs are stored in one transaction, but not all baselines in one)."""
    number = round_of(version.name)
    if not candidates_by_prompt(engine, version.id, _prompt_ids(engine, Split.train)):
        return False
    if not _prompt_ids(engine, Split.eval):
        return True
    return all(_eval_pairs_against(engine, number, b) > 0 for b in _baselines(engine, config, number))


def _last_data_hash(engine: Engine, version: ModelVersion | None) -> str | None:
    if version is None or version.training_run_id is None:
        return None
    with session_scope(engine) as session:
        run = session.get(TrainingRun, version.training_run_id)
        return run.data_hash if run else None


# -- stages 1-3: export, train, register ---------------------------------------------------------------


def _run_config(config: Config, parent: ModelVersion, export) -> dict[str, Any]:
    return {
        "round_policy": config.train.round_policy,
        "parent": parent.name,
        "model": config.model.model_dump(mode="json"),
        "train": config.train.model_dump(mode="json"),
        "export": {"n_train": export.n_train, "n_validation": export.n_validation, "dropped": export.dropped},
    }


def _train(
    config: Config, *, dataset_dir: Path, staging: Path, parent: ModelVersion, on_log
) -> dict[str, Any]:
    """Train into ``staging``; returns the result as a dict (same shape in- and out-of-process)."""
    from training.dpo import train_dpo
    from training.launch import result_as_dict, run_accelerate, write_spec

    job = {
        "base_model": config.model.base,
        "dataset_dir": dataset_dir,
        "output_dir": staging,
        "train": config.train,
        "parent_adapter": Path(parent.adapter_path) if parent.kind == VersionKind.adapter else None,
        "max_lora_rank": config.generation.vllm_max_lora_rank,
    }
    if config.train.num_processes > 1:
        import torch

        spec = write_spec(staging.parent / f"{staging.name}.spec.json", **job)
        try:
            return run_accelerate(spec, config.train, cpu=not torch.cuda.is_available())
        finally:
            spec.unlink(missing_ok=True)
    result = train_dpo(**job, on_log=on_log)
    return result_as_dict(result)


def train_version(
    engine: Engine, config: Config, *, latest: ModelVersion | None, clock: StageClock, summary: RoundSummary
) -> ModelVersion | None:
    """Stages 1-3. Returns the new version, or None when the labels did not change since ``latest``."""
    from storage.exports import export_trl
    from training.plots import plot_loss_curve, write_metrics_csv

    name = summary.version
    runs_dir = Path(config.var_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    with clock("export", "exporting train-purpose labels"):
        export_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=runs_dir))
        export_dir.chmod(0o755)
        export = export_trl(
            engine, export_dir, validation_share=config.train.validation_share, seed=config.train.seed
        )
    summary.n_train, summary.n_validation, summary.dropped = (
        export.n_train,
        export.n_validation,
        export.dropped,
    )
    if export.n_train == 0:
        shutil.rmtree(export_dir, ignore_errors=True)
        dropped = ", ".join(f"{k} {v}" for k, v in export.dropped.items()) or "none"
        raise PrefloopError(
            f"no labelled train pairs to train on (left out: {dropped}); label pairs in the app, with "
            "`prefloop simulate`, or import them with `prefloop labels import`"
        )
    if latest is not None and _last_data_hash(engine, latest) == export.data_hash:
        shutil.rmtree(export_dir, ignore_errors=True)
        summary.outcome = "no-new-labels"
        summary.message = (
            f"no new labels since {latest.name} (the same {export.n_train} + {export.n_validation} pairs, "
            f"data hash {export.data_hash[:12]}); nothing changed"
        )
        return None
    final_export = runs_dir / name / "export"
    if final_export.exists():
        shutil.rmtree(final_export)
    final_export.parent.mkdir(parents=True, exist_ok=True)
    export_dir.rename(final_export)
    crash_point("after-export")

    if config.train.round_policy == "continue" and latest is not None:
        parent = latest
    else:
        parent = _base_version(engine, config)
    run_id = registry.start_run(
        engine,
        round_id=summary.round_number,
        config=_run_config(config, parent, export),
        data_hash=export.data_hash,
    )
    summary.training_run_id = run_id
    root = registry.adapters_root(config.var_dir)
    rows: list[dict[str, Any]] = []

    def on_log(row: dict[str, Any]) -> None:
        rows.append(row)
        registry.save_metrics(engine, run_id, rows)
        crash_point("mid-train")

    try:
        with registry.staging_dir(root, name) as staging:
            with clock("train", f"training {name} on {export.n_train} pairs (parent {parent.name})"):
                result = _train(
                    config,
                    dataset_dir=final_export / "dataset",
                    staging=staging,
                    parent=parent,
                    on_log=on_log,
                )
                write_metrics_csv(result["metrics"], staging / "metrics.csv")
                plot_loss_curve(result["metrics"], staging / "loss_curve.png", title=f"{name} (DPO + LoRA)")
            with clock("register", f"registering {name}"):
                version = registry.publish_adapter(
                    engine,
                    run_id=run_id,
                    staging=staging,
                    root=root,
                    name=name,
                    base_model=config.model.base,
                    parent_id=parent.id,
                    metrics=result["metrics"],
                    resolved={
                        "dpo": result["dpo_settings"],
                        "lora": result["lora_settings"],
                        "hardware": result["hardware"],
                        "seconds": result["seconds"],
                    },
                )
    except BaseException as exc:
        registry.fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    summary.final_metrics = result["final"]
    summary.pairs_per_second = result["pairs_per_second"]
    summary.adapter_path = version.adapter_path
    crash_point("after-register")
    return version


# -- stages 4-5: generation and eval pairs -------------------------------------------------------------


def _generate(engine: Engine, config: Config, **kwargs: Any) -> None:
    from generation.api import generate_candidates

    generate_candidates(engine, config, backend=config.generation.backend, progress=True, **kwargs)


def ensure_samples(
    engine: Engine, config: Config, version: ModelVersion, prompt_ids: list[int], *, n: int, round_id: int
) -> dict[int, list[int]]:
    """Eval samples of ``version`` on the prompts; generates only for prompts that have none yet."""
    have = candidates_by_prompt(engine, version.id, prompt_ids)
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
            make_pairs=False,
            prompt_ids=missing,
        )
        have = candidates_by_prompt(engine, version.id, prompt_ids)
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


def generate_stage(engine: Engine, config: Config, version: ModelVersion, clock: StageClock, summary) -> None:
    """Stage 4: round N's train candidates + pairs from the new adapter (skipped if already there)."""
    number = summary.round_number
    with clock("generate-train", f"generating round {number} train candidates with {version.name}"):
        train_ids = _prompt_ids(engine, Split.train)
        if train_ids and not candidates_by_prompt(engine, version.id, train_ids):
            _generate(
                engine,
                config,
                round_id=number,
                policy=version.name,
                split=Split.train,
                n=config.generation.n,
                purpose=Purpose.train,
                make_pairs=True,
                prompt_ids=None,
            )
        crash_point("after-generate-train")
        summary.train_pairs_queued = _comparison_count(engine, number, Purpose.train)


def eval_stage(engine: Engine, config: Config, version: ModelVersion, clock: StageClock, summary) -> None:
    """Stage 5: eval samples on held-out prompts and blind pairs vs base (and vs the previous round)."""
    number = summary.round_number
    samples = config.round.eval_samples_per_model
    with clock("generate-eval", f"eval samples and blind pairs for {version.name}"):
        eval_ids = _prompt_ids(engine, Split.eval)
        if not eval_ids:
            summary.message += " No eval-split prompts: no eval pairs queued."
            return
        new = ensure_samples(engine, config, version, eval_ids, n=samples, round_id=number)
        for baseline in _baselines(engine, config, number):
            round_of_baseline = round_of(baseline.name) or 0
            have = ensure_samples(engine, config, baseline, eval_ids, n=samples, round_id=round_of_baseline)
            crash_point("mid-eval")
            summary.eval_pairs[baseline.name] = queue_eval_pairs(
                engine,
                new,
                have,
                baseline_name=baseline.name,
                round_number=number,
                per_prompt=math.ceil(config.round.eval_pairs_per_baseline / len(eval_ids)),
                seed=config.generation.seed,
            )
            crash_point(f"after-eval-pairs-{baseline.name}")


# -- the whole round ---------------------------------------------------------------------------------


def next_round(engine: Engine) -> tuple[ModelVersion | None, int]:
    latest = registry.latest_adapter(engine)
    return latest, (round_of(latest.name) if latest else 0) + 1


def _echo_takeover(lock: Lock, echo: Echo) -> None:
    if lock.previous:
        echo(
            f"took over the round lock of pid {lock.previous.get('pid')} "
            f"(since {lock.previous.get('since')}), which ended without releasing it"
        )


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


def train_round(engine: Engine, config: Config, echo: Echo = print) -> RoundSummary:
    """``prefloop train-round``: finish an interrupted round, else train the next one and queue its pairs."""
    with exclusive(engine, config.var_dir / ROUND_LOCK, what="a round") as lock:
        _echo_takeover(lock, echo)
        registry.remove_stale_staging(registry.adapters_root(config.var_dir))
        latest, number = next_round(engine)
        if latest is not None and not round_complete(engine, config, latest):
            number = round_of(latest.name)
            lock.describe(f"round {number}")
            summary = RoundSummary(round_number=number, version=latest.name, outcome="resumed")
            summary.message = (
                f"{latest.name} is registered but its round did not finish: resuming at generation."
            )
            echo(summary.message)
            version = latest
            summary.adapter_path = version.adapter_path
            summary.training_run_id = version.training_run_id
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
