"""`prefloop train-round` as an operator runs it (subprocesses), killed with SIGKILL at every stage.

Each kill is real: ``python -m testkit.crash <point> ...`` SIGKILLs the CLI process at that point, and the
next run must finish the round with no duplicate version, candidate or pair; a run with no new labels
changes nothing; a second round queues eval pairs against base and against round 1. Two rounds started
at once: the second exits at once naming the first, which finishes untouched.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from core.paths import work_dir
from storage.db import make_engine
from testkit.train_seed import seed_label_subset

pytestmark = pytest.mark.fault  # README "Fault and load"
REPO = Path(__file__).resolve().parent.parent
IDEAS = REPO / "data" / "youtube-titles" / "ideas.csv"
TABLES = ("prompt", "model_version", "round", "candidate", "comparison", "judgment", "training_run")
EVAL_PAIRS, EVAL_SAMPLES, N = 24, 4, 3


class Operator:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = f"sqlite:///{tmp / 'prefloop.db'}"
        self.var = work_dir(self.db)  # the database's work folder: tmp/prefloop-work
        self.config = tmp / "prefloop.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "model": {"base": "tiny"},
                    "generation": {"backend": "transformers", "n": N, "max_new_tokens": 32},
                    "train": {"num_train_epochs": 1, "logging_steps": 2},
                    "round": {"eval_samples_per_model": EVAL_SAMPLES, "eval_pairs_per_baseline": EVAL_PAIRS},
                }
            )
        )
        self.env = {
            **os.environ,
            "PREFLOOP_DB": self.db,
            "HF_HUB_OFFLINE": "1",
        }

    def command(self, *args: str, crash_at: str | None = None) -> list[str]:
        cli = ["testkit.crash", crash_at] if crash_at else ["prefloop.cli"]
        return [sys.executable, "-m", *cli, "--config", str(self.config), *args]

    def run(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        cmd = self.command(*args, crash_at=crash_at)
        return subprocess.run(cmd, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=400)

    def lock_holder(self) -> dict:
        path = self.var / "round.lock"
        return json.loads(path.read_text() or "{}") if path.exists() else {}

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def killed_at(self, point: str) -> None:
        proc = self.run("train-round", crash_at=point)
        assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.stdout}{proc.stderr}"

    def query(self, sql: str) -> list[tuple]:
        engine = make_engine(self.db)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def counts(self) -> dict[str, int]:
        return {t: self.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}

    def adapter_dirs(self) -> list[str]:
        root = self.var / "adapters"
        return sorted(p.name for p in root.iterdir()) if root.exists() else []

    def eval_pairs_against(self, number: int, baseline: str) -> int:
        return self.query(
            "SELECT count(*) FROM comparison cmp "
            "JOIN candidate ca ON ca.id = cmp.candidate_a_id JOIN candidate cb ON cb.id = cmp.candidate_b_id "
            "JOIN model_version va ON va.id = ca.model_version_id "
            "JOIN model_version vb ON vb.id = cb.model_version_id "
            f"WHERE cmp.purpose = 'eval' AND cmp.round_id = {number} "
            f"AND '{baseline}' IN (va.name, vb.name)"
        )[0][0]


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    """8 labelled train ideas (80 seed labels) and 3 held-out eval ideas."""
    op = Operator(tmp_path)
    labels = seed_label_subset(tmp_path / "labels.csv", 8)
    with open(labels, encoding="utf-8") as f:
        labelled = {r["idea"] for r in csv.DictReader(f)}
    with open(IDEAS, encoding="utf-8") as f:
        held_out = [r["Idea"] for r in csv.DictReader(f) if r["Idea"] not in labelled][:3]
    (tmp_path / "eval.csv").write_text("Idea\n" + "".join(f'"{i}"\n' for i in held_out), encoding="utf-8")
    op.ok("labels", "import", str(labels), "--template", "youtube-title", "--split", "train")
    op.ok("prompts", "import", str(tmp_path / "eval.csv"), "--column", "Idea", "--template", "youtube-title",
          "--split", "eval")  # fmt: skip
    return op


def assert_round_complete_without_duplicates(op: Operator, number: int, baselines: list[str]) -> None:
    name = f"round-{number}"
    assert op.query(f"SELECT count(*) FROM model_version WHERE name = '{name}'") == [(1,)]
    # round N's train pairs: exactly all C(k, 2) pairs of each prompt's k candidates, once
    per_prompt = op.query(
        f"SELECT c.prompt_id, count(*) FROM candidate c JOIN model_version v ON v.id = c.model_version_id "
        f"JOIN prompt p ON p.id = c.prompt_id WHERE v.name = '{name}' AND p.split = 'train' GROUP BY 1"
    )
    assert per_prompt, "no train candidates from the new adapter"
    expected_train_pairs = sum(math.comb(k, 2) for _, k in per_prompt)
    assert op.query(f"SELECT count(*) FROM comparison WHERE round_id = {number} AND purpose = 'train'") == [
        (expected_train_pairs,)
    ]
    # eval pairs: per baseline the planned number per prompt, never a pair twice
    eval_rows = op.query(
        "SELECT cmp.prompt_id, va.name, vb.name FROM comparison cmp "
        "JOIN candidate ca ON ca.id = cmp.candidate_a_id "
        "JOIN model_version va ON va.id = ca.model_version_id "
        "JOIN candidate cb ON cb.id = cmp.candidate_b_id "
        "JOIN model_version vb ON vb.id = cb.model_version_id "
        f"WHERE cmp.purpose = 'eval' AND cmp.round_id = {number}"
    )
    pairs = Counter((prompt, next(v for v in (a, b) if v != name)) for prompt, a, b in eval_rows)
    samples = dict(
        ((prompt, version), k)
        for prompt, version, k in op.query(
            "SELECT c.prompt_id, v.name, count(*) FROM candidate c "
            "JOIN model_version v ON v.id = c.model_version_id "
            "JOIN prompt p ON p.id = c.prompt_id WHERE p.split = 'eval' GROUP BY 1, 2"
        )
    )
    eval_prompts = [p for (p,) in op.query("SELECT id FROM prompt WHERE split = 'eval'")]
    per_prompt = math.ceil(EVAL_PAIRS / len(eval_prompts))
    assert {b for _, b in pairs} == set(baselines)
    for prompt in eval_prompts:
        assert samples[(prompt, name)] <= EVAL_SAMPLES
        for baseline in baselines:
            possible = samples[(prompt, name)] * samples[(prompt, baseline)]
            assert pairs[(prompt, baseline)] == min(per_prompt, possible)
    assert op.query(
        "SELECT count(*) FROM (SELECT DISTINCT candidate_a_id, candidate_b_id FROM comparison)"
    ) == [(op.counts()["comparison"],)]


@pytest.mark.slow
def test_killed_at_every_stage_then_completed_then_nothing_new(operator: Operator) -> None:
    op = operator
    op.killed_at("after-export")
    op.killed_at("mid-train")  # after the first logging step
    dead = op.lock_holder()  # a killed holder leaves its note; the kernel has freed the lock itself
    assert dead["what"] == "round 1" and int(dead["pid"]) > 0
    assert op.query("SELECT status FROM training_run") == [("running",)]
    assert op.query("SELECT count(*) FROM model_version WHERE kind = 'adapter'") == [(0,)]
    assert any(d.startswith(".staging-") for d in op.adapter_dirs())
    live_metrics = op.query("SELECT metrics FROM training_run")[0][0]
    assert "rewards/accuracies" in live_metrics, "metrics are stored while the run goes"

    op.killed_at("after-health")  # the gate chose, nothing published: the staging folder is discarded
    assert op.query("SELECT count(*) FROM model_version WHERE kind = 'adapter'") == [(0,)]
    op.killed_at("after-rename")  # adapter directory in place, version not yet registered
    assert op.adapter_dirs() == ["round-1"]
    assert op.query("SELECT count(*) FROM model_version WHERE kind = 'adapter'") == [(0,)]

    op.killed_at("after-register")
    op.killed_at("after-generate-train")
    op.killed_at("mid-eval")
    out = op.ok("train-round")
    assert "resuming at generation" in out and "round-1" in out
    said = " ".join(out.split())  # the console wraps long lines
    assert "took over the round lock of pid" in said and "which ended without releasing it" in said
    assert_round_complete_without_duplicates(op, 1, ["base"])
    assert op.adapter_dirs() == ["round-1"]
    files = sorted(p.name for p in (op.var / "adapters" / "round-1").iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "loss_curve.png", "metrics.csv"} <= set(files)
    assert "checkpoints" not in files  # the health gate removed the ones it did not choose
    runs = op.query("SELECT status, error IS NOT NULL FROM training_run ORDER BY id")
    assert runs == [("failed", 1)] * 3 + [("completed", 0)]  # after-export: before its run began
    version_run = op.query("SELECT training_run_id, parent_id FROM model_version WHERE name = 'round-1'")
    assert version_run[0][0] == 4
    assert op.query(f"SELECT name FROM model_version WHERE id = {version_run[0][1]}") == [("base",)]

    before, dirs = op.counts(), op.adapter_dirs()
    out = op.ok("train-round")
    assert "no new labels since round-1" in out and "nothing changed" in out
    assert op.counts() == before and op.adapter_dirs() == dirs


@pytest.mark.slow
def test_second_round_on_simulated_labels_is_compared_with_base_and_round_one(operator: Operator) -> None:
    op = operator
    op.ok("--set", "train.round_policy=continue", "train-round")
    op.ok("simulate", "--oracle", "length-band", "--purpose", "train")
    # killed after the pairs vs base are stored, before those vs round-1 (a transaction each)
    proc = op.run("--set", "train.round_policy=continue", "train-round", crash_at="after-eval-pairs-base")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert op.eval_pairs_against(2, "base") > 0 and op.eval_pairs_against(2, "round-1") == 0
    out = op.ok("--set", "train.round_policy=continue", "train-round")
    assert "resuming at generation" in out and "eval pairs vs round-1" in out
    assert_round_complete_without_duplicates(op, 2, ["base", "round-1"])
    parent = op.query(
        "SELECT p.name FROM model_version v JOIN model_version p ON p.id = v.parent_id "
        "WHERE v.name = 'round-2'"
    )
    assert parent == [("round-1",)], "continue starts from the previous adapter"
    # base eval samples were generated once (round 1) and reused in round 2
    base_eval = op.query(
        "SELECT count(DISTINCT c.round_id) FROM candidate c "
        "JOIN model_version v ON v.id = c.model_version_id "
        "JOIN prompt p ON p.id = c.prompt_id WHERE v.name = 'base' AND p.split = 'eval'"
    )
    assert base_eval == [(1,)]


@pytest.mark.slow
def test_two_rounds_at_once_the_second_exits_naming_the_first(operator: Operator) -> None:
    op = operator
    first = subprocess.Popen(
        op.command("train-round"),
        env=op.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while op.lock_holder().get("what") != "round 1":
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        second = op.run("train-round")
        assert first.poll() is None, "the second run waited for the first instead of exiting at once"
        since = op.lock_holder()["since"]
        assert second.returncode == 1, second.stdout + second.stderr
        assert (
            second.stderr.strip()
            .splitlines()[-1]
            .startswith(f"error: round 1 is being trained by pid {first.pid} since {since}")
        ), second.stderr
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, out + err
    assert_round_complete_without_duplicates(op, 1, ["base"])
    assert op.query("SELECT status FROM training_run") == [("completed",)]  # the first's run, untouched
    assert op.adapter_dirs() == ["round-1"] and (op.var / "runs" / "round-1" / "export" / "dataset").is_dir()
    assert op.lock_holder() == {}  # released on exit


def test_no_labels_is_one_clear_error(tmp_path: Path) -> None:
    op = Operator(tmp_path)
    proc = op.run("train-round")
    assert proc.returncode == 1
    assert "no labelled train pairs" in proc.stderr and "prefloop labels import" in proc.stderr
    assert op.counts()["model_version"] == 0 and op.counts()["training_run"] == 0


def test_a_round_with_pairs_vs_base_but_none_vs_the_previous_round_is_not_complete(engine) -> None:
    """The state a kill between the two baselines' transactions leaves (no training needed to build it)."""
    from core.config import Config
    from loop.round import round_complete
    from storage.db import session_scope
    from storage.models import ModelVersion, Prompt, Purpose, Split, VersionKind, text_hash
    from storage.repo import get_or_create_candidate, get_or_create_comparison, get_or_create_round

    config = Config()
    with session_scope(engine, write=True) as s:
        versions = {
            name: ModelVersion(name=name, kind=kind, base_model=config.model.base)
            for name, kind in (
                ("base", VersionKind.base),
                ("round-1", VersionKind.adapter),
                ("round-2", VersionKind.adapter),
            )
        }
        s.add_all(versions.values())
        prompts = {
            split: Prompt(text=split, normalized_hash=text_hash(split), split=Split(split))
            for split in ("train", "eval")
        }
        s.add_all(prompts.values())
        s.flush()
        get_or_create_round(s, 2)
        get_or_create_candidate(s, prompts["train"], versions["round-2"], "a train title")
        eval_candidates = {
            name: get_or_create_candidate(s, prompts["eval"], v, f"{name} title")[0]
            for name, v in versions.items()
        }
        get_or_create_comparison(
            s, eval_candidates["round-2"], eval_candidates["base"], Purpose.eval, round_id=2
        )
        round_two = versions["round-2"]
    assert not round_complete(engine, config, round_two), "the pairs vs round-1 were never queued"
    with session_scope(engine, write=True) as s:
        get_or_create_comparison(
            s, eval_candidates["round-2"], eval_candidates["round-1"], Purpose.eval, round_id=2
        )
    assert round_complete(engine, config, round_two)
