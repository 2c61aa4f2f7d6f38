"""Evaluation speed: the Bradley-Terry bootstrap and the whole report, each against a same-run baseline.

- Bootstrap: prefloop aggregates battles per model pair and fits with a few Newton steps; the baseline
  fits every resample as one logistic regression row per battle (statsmodels ``Logit``), which is what
  the Chatbot Arena notebook does with scikit-learn.
- Report: ``build_report`` (gather + statistics + 1,000 bootstrap rounds + three plots) on a database of
  eval judgments, against reading those judgments alone (``gather``).
- Arena import of 3,000 and 100,000 battles (``storage.arena.import_battles``: set-based lookups, one bulk
  insert per table) against the row-by-row import it replaced (get-or-create per candidate, comparison and
  judgment, a query each), measured on 3,000 battles in the same run: 100,000 would take hours that way.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import BenchRow, machine, row
from evaluation.stats import bootstrap_bradley_terry

MODELS = ("base", "round-1", "round-2", "round-3")
STRENGTH = {"base": 0.0, "round-1": 0.4, "round-2": 0.7, "round-3": 0.8}


def _battles(n: int, seed: int = 0) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(MODELS, 2, replace=False)
        p = 1 / (1 + math.exp(STRENGTH[str(b)] - STRENGTH[str(a)]))
        draw = rng.random()
        out.append((str(a), str(b), 0.5 if abs(draw - p) < 0.05 else float(draw < p)))
    return out


def _logit_bootstrap(battles: list[tuple[str, str, float]], rounds: int, seed: int) -> None:
    """Baseline: one logistic-regression row per battle outcome; a tie becomes one win and one loss row."""
    from statsmodels.discrete.discrete_model import Logit

    others = MODELS[1:]
    design = np.array([[(a == m) - (b == m) for m in others] for a, b, _ in battles], dtype=float)
    scores = np.array([s for _, _, s in battles])
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        idx = rng.integers(0, len(battles), len(battles))
        x, s = design[idx], scores[idx]
        x2 = np.vstack([x, x])
        y2 = np.concatenate([np.ones(len(s)), np.zeros(len(s))])
        w = np.concatenate([s, 1 - s])
        keep = w > 0  # statsmodels Logit takes no weights: keep the rows whose outcome happened
        Logit(y2[keep], x2[keep]).fit(disp=0, method="newton")


def _bootstrap_rows(quick: bool) -> list[BenchRow]:
    n, rounds = (2000, 100) if quick else (5000, 1000)
    battles = _battles(n)
    start = time.perf_counter()
    bootstrap_bradley_terry(battles, rounds=rounds, seed=0)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    _logit_bootstrap(battles, rounds, seed=0)
    theirs = time.perf_counter() - start
    return [
        row(
            "evaluation",
            f"Bradley-Terry bootstrap, {rounds} rounds x {n:,} battles, 4 models",
            ours,
            "s",
            "per-battle logistic regression (statsmodels Logit) per round",
            theirs,
            note=f"lower is better; {machine()}",
        )
    ]


def _report_rows(quick: bool) -> list[BenchRow]:
    from core.config import ReportConfig
    from evaluation.report import build_report, gather
    from storage.db import make_engine, migrate, session_scope
    from testkit.eval_seed import build_eval_db

    copies = 5 if quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        for copy in range(copies):
            build_eval_db(engine, suffix=f"-{copy}")
        start = time.perf_counter()
        with session_scope(engine) as session:
            judgments = len(gather(session).records)
        read = time.perf_counter() - start
        start = time.perf_counter()
        build_report(engine, ReportConfig())
        full = time.perf_counter() - start
        engine.dispose()
    return [
        row(
            "evaluation",
            f"report on {judgments:,} eval judgments (1,000 bootstrap rounds, 3 plots)",
            full,
            "s",
            "reading the judgments only",
            read,
            note=f"ratio = cost of the statistics and plots over the DB read; {machine()}",
        )
    ]


def _arena_rows(n: int, models: int = 20, judges: int = 3, seed: int = 0) -> list[dict]:
    """``n`` battles on n/2 prompts (so most prompts are judged twice), random pairs of ``models``."""
    rng = np.random.default_rng(seed)
    names = [f"model-{k:02d}" for k in range(models)]
    rows = []
    for k in range(n):
        prompt = k // 2
        a, b = rng.choice(names, 2, replace=False)
        rows.append(
            {
                "model_a": str(a),
                "model_b": str(b),
                "winner": ("model_a", "model_b", "tie", "tie (bothbad)")[int(rng.integers(4))],
                "judge": f"judge-{k % judges}",
                "prompt": f"Question {prompt}: explain topic {prompt} in a paragraph.",
                "response_a": f"{a} on topic {prompt}: " + "words " * 40,
                "response_b": f"{b} on topic {prompt}: " + "other words " * 30,
            }
        )
    return rows


def _row_by_row_import(engine, path: Path) -> None:
    """The import before the bulk rewrite: one get-or-create query (and flush) per candidate, comparison
    and judgment. Kept here only as the baseline."""
    from sqlmodel import select

    from storage.arena import read_battles
    from storage.db import session_scope
    from storage.imports import store_prompts
    from storage.models import AnnotatorKind, Choice, Judgment, Purpose, Split, VersionKind
    from storage.parsing import PromptRecord
    from storage.queries import current
    from storage.repo import (
        get_or_create_annotator,
        get_or_create_candidate,
        get_or_create_comparison,
        get_or_create_version,
    )

    battles, _ = read_battles(path)
    with session_scope(engine, write=True) as session:
        records = [PromptRecord(row=b.line, text=b.prompt) for b in battles]
        prompts, _ = store_prompts(
            session, records, template=None, split=Split.eval, source="b", eval_share=1
        )
        versions, annotators = {}, {}
        for battle, record in zip(battles, records, strict=True):
            prompt = prompts[record.key]
            for name in (battle.model_a, battle.model_b):
                if name not in versions:
                    versions[name] = get_or_create_version(session, name, VersionKind.external)
            if battle.judge not in annotators:
                annotators[battle.judge] = get_or_create_annotator(
                    session, battle.judge, AnnotatorKind.imported
                )
            cand_a, _ = get_or_create_candidate(session, prompt, versions[battle.model_a], battle.response_a)
            cand_b, _ = get_or_create_candidate(session, prompt, versions[battle.model_b], battle.response_b)
            comp, _ = get_or_create_comparison(session, cand_a, cand_b, Purpose.eval)
            annotator = annotators[battle.judge]
            session.exec(
                select(Judgment).where(
                    Judgment.comparison_id == comp.id,
                    Judgment.annotator_id == annotator.id,
                    current(),
                )
            ).first()
            session.add(Judgment(comparison_id=comp.id, annotator_id=annotator.id, choice=Choice.tie))
            session.flush()


def _timed_import(tmp: Path, n: int, importer) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time is the steadier one."""
    from storage.db import make_engine, migrate
    from testkit.eval_seed import write_battles

    path = write_battles(tmp / f"battles-{n}.jsonl", _arena_rows(n))
    engine = make_engine(f"sqlite:///{tmp / f'import-{n}-{importer.__name__}.db'}")
    migrate(engine)
    start, cpu = time.perf_counter(), time.process_time()
    importer(engine, path)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    engine.dispose()
    return elapsed, cpu


def _import_rows(quick: bool) -> list[BenchRow]:
    from storage.arena import import_battles

    small, large = (1000, 10_000) if quick else (3000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        old = _timed_import(Path(tmp), small, _row_by_row_import)
        ours_small = _timed_import(Path(tmp), small, import_battles)
        ours_large = _timed_import(Path(tmp), large, import_battles)
    baseline = f"row-by-row import (a query per candidate, pair and judgment) on {small:,} battles"
    return [
        row(
            "evaluation",
            f"Arena import, {n:,} battles (SQLite file): {wall:.1f} s wall, {cpu:.1f} s CPU",
            n / wall,
            "battles/s",
            baseline,
            small / old[0],
            note=f"higher is better; baseline {old[0]:.1f} s wall, {old[1]:.1f} s CPU for {small:,}; "
            f"target 100k <= 60 s and >= 10x; {machine()}",
        )
        for n, (wall, cpu) in ((small, ours_small), (large, ours_large))
    ]


def run(quick: bool = False) -> list[BenchRow]:
    return _bootstrap_rows(quick) + _report_rows(quick) + _import_rows(quick)
