"""The loop-learns scenarios: an operator's commands from an empty database to report.json, per seed.

Used by tests/test_loop_learns.py (seed 0) and by ``python -m bench.loop_seeds`` (the README's seeds
table). Every step is the real ``prefloop`` command in a subprocess, on the tiny model.

A seed S means ``--set train.seed=S --set generation.seed=S`` on every command and the labeller's
``--seed S+1``; S = 0 is the configuration's defaults, i.e. exactly what the test plays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.paths import REPO_ROOT

IDEAS = REPO_ROOT / "data" / "youtube-titles" / "ideas.csv"
DATABASE = "prefloop"  # prefloop.db and its work folder prefloop-work (core.paths.work_dir)


@dataclass(frozen=True)
class Scenario:
    oracle: str
    noise: float = 0.0  # share of the labeller's decisive train answers flipped
    rounds: int = 1

    @property
    def id(self) -> str:
        return f"{self.oracle}{'+noise' if self.noise else ''}-{self.rounds}round"

    def labeller(self, seed: int) -> list[str]:
        return ["--oracle", self.oracle, "--noise", str(self.noise), "--seed", str(seed + 1)]


# shorter rewards length, number a style ("5 Steps to ..."); length-band and keywords are not learnable to
# 0.65 by the tiny model in one round (README section `simulate`, "What the tiny model learns").
SCENARIOS = [
    Scenario("number", rounds=2),
    Scenario("shorter"),
    Scenario("shorter", noise=0.2),
]


# The tiny model's loop-learns recipe: beside its 2 epochs (core.config.BASE_RECIPES; 1 learned `number`
# to 0.64 only: README `simulate`), the SFT weight at 0.1 rather than the default 0.2, which left the
# noisy labeller's round centred on its bar (README "Across seeds").
TINY_RECIPE = ("--set", "train.pref_ftx=0.1")


def seed_settings(seed: int) -> list[str]:
    return ["--set", f"train.seed={seed}", "--set", f"generation.seed={seed}"]


class Operator:
    """Runs ``prefloop ...`` against one database (and so its work folder), and keeps the timings."""

    def __init__(self, tmp: Path, settings: list[str] | tuple[str, ...] = ()) -> None:
        self.env = {
            **os.environ,
            "PREFLOOP_DB": f"sqlite:///{tmp / (DATABASE + '.db')}",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",  # numpy/scipy in `report` too: one thread per scenario
        }
        self.tmp = tmp
        self.settings = ["--set", "model.base=tiny", *TINY_RECIPE, *settings]
        self.seconds: dict[str, float] = {}
        self.cpu_seconds = 0.0

    def __call__(self, *args: str) -> str:
        started = time.perf_counter()
        # output to files and the child reaped with wait4: its own CPU time, even with other threads'
        # commands running at once (the process-wide children times would mix them)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "prefloop.cli", *self.settings, *args],
                cwd=self.tmp,
                env=self.env,
                stdout=out,
                stderr=err,
                text=True,
            )
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0), err.seek(0)
            stdout, stderr = out.read(), err.read()
        self.cpu_seconds += usage.ru_utime + usage.ru_stime
        step = " ".join(args[:2])
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started
        if child.returncode != 0:
            raise RuntimeError(f"`prefloop {' '.join(args)}` failed:\n{stdout}\n{stderr}")
        return stdout

    def report(self, name: str) -> dict[str, Any]:
        out = self.tmp / name
        self("report", "--out", str(out))
        return json.loads((out / "report.json").read_text())


@dataclass
class Outcome:
    reports: dict[str, dict] = field(default_factory=dict)  # "round-1", "round-2" -> report.json
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    error: str | None = None


def operator(tmp: Path, seed: int = 0, settings: tuple[str, ...] = ()) -> Operator:
    return Operator(tmp, [*seed_settings(seed), *settings])


def round_zero(run: Operator) -> None:
    """An empty database filled as an operator starts: the ideas imported, round 0 generated.

    Every scenario of one seed starts from this same state, so one copy (``start`` of ``play``) serves
    them all: their commands are identical up to here."""
    run("prompts", "import", str(IDEAS), "--column", "Idea", "--template", "youtube-title")
    run("generate", "--round", "0", "--n", "5")


def copy_database(source: Path, target: Path) -> None:
    """The SQLite file (with its WAL, no writer open) and its work folder, from one folder to another."""
    for path in source.iterdir():
        if path.name.startswith(DATABASE):
            copy = shutil.copytree if path.is_dir() else shutil.copy2
            copy(path, target / path.name)


def play(
    scenario: Scenario,
    tmp: Path,
    seed: int = 0,
    settings: tuple[str, ...] = (),
    start: Path | None = None,
) -> Outcome:
    """The operator's commands for one scenario; eval pairs are judged by the noiseless oracle, because
    the question is whether the policy learned the rule (even from a careless labeller).

    ``settings``: further ``--set key=value`` pairs (as alternating flags) on every command. ``start``: a
    folder that ``round_zero`` filled with ``operator(folder, seed, settings)``, copied instead of repeating
    those two commands."""
    run, outcome = operator(tmp, seed, settings), Outcome()
    judge = ["--oracle", scenario.oracle, "--annotator", f"judge:{scenario.oracle}", "--purpose", "eval"]
    try:
        if start is None:
            round_zero(run)
        else:
            copy_database(start, tmp)
        for number in range(1, scenario.rounds + 1):
            run("simulate", *scenario.labeller(seed), "--purpose", "train")
            run("train-round")
            run("simulate", *judge)
            outcome.reports[f"round-{number}"] = run.report(f"report-{number}")
    except RuntimeError as exc:
        outcome.error = str(exc)
    outcome.seconds = {step: round(s, 1) for step, s in run.seconds.items()}
    outcome.cpu_seconds = round(run.cpu_seconds, 1)
    return outcome


def comparison(report: dict, model: str, baseline: str) -> dict:
    """The simulated annotators' head-to-head of ``model`` vs ``baseline`` (never mixed with humans)."""
    found = [
        c
        for c in report["groups"]["simulated"]["comparisons"]
        if (c["model"], c["baseline"]) == (model, baseline)
    ]
    if not found:
        raise LookupError(
            f"no {model} vs {baseline} comparison in report.json: {report['groups']['simulated']}"
        )
    return found[0]
