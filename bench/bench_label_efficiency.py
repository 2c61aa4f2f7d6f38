"""Label efficiency: win rate vs base under an oracle, against the number of labels, per pair selection.

One round 0 is generated for the seed's ideas with the tiny model (``prefloop generate``), as an
operator would. Then for every (oracle, selection, budget): a copy of that database gets ``budget`` oracle
labels on the selected pairs, the real export (``storage.exports.export_trl``) and DPO training
(``training.dpo.train_dpo``, default TrainConfig) make an adapter, and the adapter's titles on the held-out
eval ideas meet the base's titles (same sampling, same seeds) before the same oracle: win rate with ties as
½ and a Wilson 95% interval. The seed needed 1,140 human labels for 68% (n = 50, CI 54-79%).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from bench.common import BenchRow, row
from core.paths import REPO_ROOT
from evaluation.stats import wilson_interval, win_rate
from labelling.oracles import Oracle, load_oracle
from labelling.pairs import PairTexts, select_pairs
from labelling.simulate import simulated_annotator_id, stored_choice
from storage.db import make_engine, session_scope

AREA = "label-efficiency"
SEED_LABELS, SEED_WIN_RATE = 1140, 0.68
IDEAS = REPO_ROOT / "data" / "youtube-titles" / "ideas.csv"


@dataclass(frozen=True)
class Plan:
    oracles: tuple[str, ...]
    strategies: tuple[str, ...]
    budgets: tuple[int, ...]
    eval_samples: int  # titles per model per held-out idea


# the oracles the tiny model can learn in one round (README section `simulate`)
FULL = Plan(("shorter", "number"), ("random", "most-different"), (50, 100, 200, 400, 800), 20)
QUICK = Plan(("shorter",), ("random", "most-different"), (100, 300), 10)


@dataclass
class Arm:
    oracle: str
    strategy: str
    budget: int
    decisive_labels: int
    wins: int
    losses: int
    ties: int
    seconds: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float:
        return win_rate(self.wins, self.losses, self.ties)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.wins + 0.5 * self.ties, self.n)


@dataclass
class EvalSetup:
    """What every arm shares: the model, the held-out prompts and the base's titles on them."""

    base_model: str
    train: object  # core.config.TrainConfig (imported lazily with the config)
    backend: object  # a generation Backend
    prompts: list[tuple[str, list[dict[str, str]]]]  # (prompt text, chat messages) of the eval split
    base_titles: list[list[str]]


def labels_needed(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The smallest budget whose win rate reaches ``target`` (None if none does)."""
    return next((budget for budget, rate in sorted(curve) if rate >= target), None)


def _prefloop(db_url: str, *args: str) -> None:
    env = {**os.environ, "PREFLOOP_DB": db_url, "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-m", "prefloop.cli", "--set", "model.base=tiny", *args],
        check=True,
        env=env,
        cwd=REPO_ROOT,
    )


def build_round_zero(workdir: Path) -> Path:
    """The seed's ideas imported and round 0 generated (5 titles each, all pairs), as an operator would."""
    db = workdir / "round0.db"
    url = f"sqlite:///{db}"
    _prefloop(url, "prompts", "import", str(IDEAS), "--column", "Idea", "--template", "youtube-title")
    _prefloop(url, "generate", "--round", "0", "--n", "5")
    engine = make_engine(url)
    with engine.connect() as conn:  # fold the WAL into the file so a plain copy is complete
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return db


def train_pool(engine: Engine) -> list[PairTexts]:
    """Every train pair of round 0 with its two texts (what a selection strategy may look at)."""
    from storage.models import Candidate, Comparison, Purpose

    with session_scope(engine) as session:
        texts = dict(session.exec(select(Candidate.id, Candidate.text)).all())
        comps = session.exec(select(Comparison).where(Comparison.purpose == Purpose.train)).all()
        return [PairTexts(c.id, c.prompt_id, texts[c.candidate_a_id], texts[c.candidate_b_id]) for c in comps]


def label(engine: Engine, pairs: Sequence[PairTexts], oracle: Oracle, oracle_name: str) -> int:
    """Record the oracle's judgment of each selected pair (as shown to a person: stable random side)."""
    from core.config import AnnotateConfig
    from labelling.assignment import left_side, record_judgment

    settings = AnnotateConfig()  # one judgment per pair, by one simulated annotator: overlap 1 is met once

    annotator_id = simulated_annotator_id(engine, f"sim:{oracle_name}")
    prompts = _prompt_texts(engine)
    decisive = 0
    for pair in pairs:
        left = left_side(annotator_id, pair.key)
        shown = (pair.text_a, pair.text_b) if left == "a" else (pair.text_b, pair.text_a)
        choice = stored_choice(oracle(prompts[pair.prompt_key], *shown), left)
        record_judgment(engine, annotator_id, pair.key, choice, left=left, settings=settings)
        decisive += choice != "tie"
    return decisive


def _prompt_texts(engine: Engine) -> dict[int, str]:
    from storage.models import Prompt

    with session_scope(engine) as session:
        return dict(session.exec(select(Prompt.id, Prompt.text)).all())


def eval_prompts(engine: Engine) -> list[tuple[str, list[dict[str, str]]]]:
    from storage.models import Prompt, Split, prompt_messages

    with session_scope(engine) as session:
        prompts = session.exec(select(Prompt).where(Prompt.split == Split.eval).order_by(Prompt.id)).all()
        return [(p.text, prompt_messages(p)) for p in prompts]


def sample_titles(backend, base_model: str, adapter: str | None, prompts, n: int) -> list[list[str]]:
    from generation.backends.base import Policy, SamplingParams

    name = "adapter" if adapter else "base"
    policy = Policy(name, base_model, adapter_path=adapter, lora_id=1 if adapter else 0)
    out = backend.generate([m for _, m in prompts], policy, SamplingParams(n=n, seed=1234))
    return [[g.text for g in group] for group in out]


def head_to_head(oracle: Oracle, prompts, new: list[list[str]], base: list[list[str]], seed: int = 0):
    """Sample i of the new model vs sample i of base, per prompt, in a random display order."""
    rng = random.Random(seed)
    wins = losses = ties = 0
    for (prompt, _), new_titles, base_titles in zip(prompts, new, base, strict=True):
        for mine, theirs in zip(new_titles, base_titles, strict=True):
            flipped = rng.random() < 0.5
            verdict = oracle(prompt, theirs, mine) if flipped else oracle(prompt, mine, theirs)
            if verdict == "tie":
                ties += 1
            elif (verdict == "a") != flipped:
                wins += 1
            else:
                losses += 1
    return wins, losses, ties


def run_arm(
    round0: Path,
    workdir: Path,
    plan: Plan,
    setup: EvalSetup,
    oracle_name: str,
    strategy: str,
    budget: int,
) -> Arm:
    """Label ``budget`` selected pairs with the oracle, train, and judge the adapter with the same oracle."""
    from storage.exports import export_trl
    from training.dpo import train_dpo

    started = time.perf_counter()
    arm_dir = workdir / f"{oracle_name}-{strategy}-{budget}"
    arm_dir.mkdir()
    db = arm_dir / "labels.db"
    shutil.copyfile(round0, db)
    engine = make_engine(f"sqlite:///{db}")
    oracle = load_oracle(oracle_name)
    chosen = select_pairs(strategy, train_pool(engine), budget, seed=budget)
    decisive = label(engine, chosen, oracle, oracle_name)
    train = setup.train
    export = export_trl(engine, arm_dir / "export", validation_share=train.validation_share, seed=train.seed)
    engine.dispose()
    adapter = arm_dir / "adapter"
    train_dpo(
        base_model=setup.base_model, dataset_dir=export.paths["dataset"], output_dir=adapter, train=train
    )
    new = sample_titles(setup.backend, setup.base_model, str(adapter), setup.prompts, plan.eval_samples)
    wins, losses, ties = head_to_head(oracle, setup.prompts, new, setup.base_titles)
    return Arm(oracle_name, strategy, budget, decisive, wins, losses, ties, time.perf_counter() - started)


def _budget_row(mine: Arm, ref: Arm) -> BenchRow:
    (lo, hi), (rlo, rhi) = mine.ci95, ref.ci95
    return row(
        AREA,
        f"{mine.oracle}: win rate vs base after {mine.budget} labels, {mine.strategy} pairs",
        round(mine.win_rate, 3),
        "win rate",
        f"{ref.strategy} pairs",
        round(ref.win_rate, 3),
        note=f"95% CI [{lo:.2f}, {hi:.2f}] vs [{rlo:.2f}, {rhi:.2f}]; eval pairs {mine.n}/{ref.n}; "
        f"decisive labels {mine.decisive_labels}/{ref.decisive_labels}; higher is better",
    )


def _needed_row(arms: list[Arm], oracle: str, strategy: str, baseline: str, max_budget: int) -> BenchRow:
    """Labels needed for the seed's 68%, this selection vs the baseline selection."""
    what = f"{oracle}: labels needed for the seed's 68%, {strategy} pairs"
    needed = labels_needed(_curve(arms, oracle, strategy), SEED_WIN_RATE)
    reference = labels_needed(_curve(arms, oracle, baseline), SEED_WIN_RATE)
    if needed is None:
        return row(AREA, what, float("nan"), "labels", note=f"not reached within {max_budget} labels")
    lo, hi = next(a for a in arms if (a.oracle, a.strategy, a.budget) == (oracle, strategy, needed)).ci95
    return row(
        AREA,
        what,
        needed,
        "labels",
        f"{baseline} pairs",
        reference,
        note=f"win rate CI there [{lo:.2f}, {hi:.2f}]; seed: {SEED_LABELS:,} human labels; "
        + (f"no baseline: {baseline} did not reach it within {max_budget}; " if reference is None else "")
        + "lower is better",
    )


def rows_for(arms: list[Arm], plan: Plan) -> list[BenchRow]:
    """Per oracle: each budget's win rate (smarter selection vs random), then labels needed for 68%."""
    baseline, *others = plan.strategies
    by_key = {(a.oracle, a.strategy, a.budget): a for a in arms}
    out: list[BenchRow] = []
    for oracle in plan.oracles:
        for strategy in others:
            out += [
                _budget_row(by_key[(oracle, strategy, b)], by_key[(oracle, baseline, b)])
                for b in plan.budgets
            ]
            out.append(_needed_row(arms, oracle, strategy, baseline, max(plan.budgets)))
    return out


def _curve(arms: list[Arm], oracle: str, strategy: str) -> list[tuple[int, float]]:
    return [(a.budget, a.win_rate) for a in arms if (a.oracle, a.strategy) == (oracle, strategy)]


def run(quick: bool = False) -> list[BenchRow]:
    from core.config import load_config
    from generation.backends.transformers_backend import TransformersBackend

    plan = QUICK if quick else FULL
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="prefloop-label-eff-") as tmp:
        workdir = Path(tmp)
        round0 = build_round_zero(workdir)
        engine = make_engine(f"sqlite:///{round0}")
        prompts = eval_prompts(engine)
        engine.dispose()
        backend = TransformersBackend(batch_size=config.generation.batch_size)
        base_titles = sample_titles(backend, config.model.base, None, prompts, plan.eval_samples)
        setup = EvalSetup(config.model.base, config.train, backend, prompts, base_titles)
        arms = []
        for oracle in plan.oracles:
            for strategy in plan.strategies:
                for budget in plan.budgets:
                    arm = run_arm(round0, workdir, plan, setup, oracle, strategy, budget)
                    print(
                        f"{AREA}: {oracle} {strategy} {budget}: {arm.win_rate:.3f} {arm.ci95} "
                        f"n={arm.n} decisive={arm.decisive_labels} {arm.seconds:.0f}s",
                        flush=True,
                    )
                    arms.append(arm)
    return rows_for(arms, plan)
