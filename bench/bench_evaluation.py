"""Evaluation speed: the Bradley-Terry bootstrap and the whole report, each against a same-run baseline.

- Bootstrap: prefloop aggregates battles per model pair and fits with a few Newton steps; the baseline
  fits every resample as one logistic regression row per battle (statsmodels ``Logit``), which is what
  the Chatbot Arena notebook does with scikit-learn.
- Report: ``build_report`` (gather + statistics + 1,000 bootstrap rounds + three plots) on a database of
  eval judgments, against reading those judgments alone (``gather``).
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


def run(quick: bool = False) -> list[BenchRow]:
    return _bootstrap_rows(quick) + _report_rows(quick)
