"""32 annotator processes × 50 decisions on one SQLite file and on one PostgreSQL database.

Every decision a worker was told is stored is stored (none lost), exactly once (none duplicated), and
no pair gets more judgments than its overlap; the latency of one decision (next pair + record) is
printed as p50/p99 (README "Fault and load" keeps the figures with the machine and its load).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from storage.db import make_engine, migrate, session_scope
from storage.models import (
    Annotator,
    Candidate,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    VersionKind,
    text_hash,
)
from tests.conftest import fresh_postgres_url
from tests.fault.annotator_worker import SETTINGS

pytestmark = pytest.mark.fault
REPO = Path(__file__).resolve().parents[2]
WORKERS, DECISIONS = 32, 50
PAIRS = {Purpose.train: 500, Purpose.eval: 400}  # × overlap 2: 1,800 slots for 1,650 decisions


def seed(url: str) -> list[int]:
    """Pairs to judge (two candidates per prompt) and the annotators; returns the annotator ids."""
    engine = make_engine(url)
    migrate(engine)
    with session_scope(engine, write=True) as session:
        version = ModelVersion(name="base", kind=VersionKind.base, base_model="tiny")
        session.add(version)
        session.flush()
        for purpose, count in PAIRS.items():
            for i in range(count):
                prompt = Prompt(
                    text=f"{purpose} {i}",
                    normalized_hash=text_hash(f"{purpose} {i}"),
                    split=Split(purpose.value),
                )
                session.add(prompt)
                session.flush()
                a, b = (
                    Candidate(
                        prompt_id=prompt.id, model_version_id=version.id, text=t, text_hash=text_hash(t)
                    )
                    for t in (f"first {i}", f"second {i}")
                )
                session.add_all([a, b])
                session.flush()
                session.add(
                    Comparison(prompt_id=prompt.id, candidate_a_id=a.id, candidate_b_id=b.id, purpose=purpose)
                )
        annotators = [Annotator(name=f"worker-{k}") for k in range(WORKERS + 1)]  # one alone first
        session.add_all(annotators)
        session.flush()
        ids = [a.id for a in annotators]
    engine.dispose()
    return ids


def run_workers(url: str, annotator_ids: list[int]) -> tuple[list[list[dict]], float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fault.annotator_worker", url, str(aid), str(DECISIONS)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for aid in annotator_ids
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        started = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results, time.perf_counter() - started
    finally:
        for proc in procs:
            proc.kill()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def load_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'load.db'}"
    return fresh_postgres_url(request.getfixturevalue("postgres_server"))


def percentiles(results: list[list[dict]]) -> tuple[float, float]:
    ms = sorted(d["ms"] for r in results for d in r)
    return statistics.median(ms), ms[int(0.99 * (len(ms) - 1))]


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def test_32_processes_50_decisions_each_nothing_lost_duplicated_or_over_overlap(load_url: str) -> None:
    alone, *annotator_ids = seed(load_url)
    load_before = load_average()
    baseline, _ = run_workers(load_url, [alone])  # the same decisions without contention, same run
    results, seconds = run_workers(load_url, annotator_ids)
    load_after = load_average()
    returned = {
        (aid, d["judgment"], d["comparison"], d["choice"])
        for aid, decisions in zip([alone, *annotator_ids], baseline + results, strict=True)
        for d in decisions
    }
    assert [len(r) for r in baseline + results] == [DECISIONS] * (WORKERS + 1), "a worker ran out of pairs"
    engine = make_engine(load_url)
    with session_scope(engine) as session:
        rows = session.exec(select(Judgment)).all()
        purposes = dict(session.exec(select(Comparison.id, Comparison.purpose)).all())
        leases = session.exec(text("SELECT count(*) FROM lease")).one()[0]
    engine.dispose()
    stored = {(j.annotator_id, j.id, j.comparison_id, j.choice.value) for j in rows}
    assert stored == returned  # stored = returned: none lost, none extra
    per_annotator_pair = Counter((j.annotator_id, j.comparison_id) for j in rows)
    assert max(per_annotator_pair.values()) == 1, "an annotator got a pair twice"
    per_pair = Counter(j.comparison_id for j in rows)
    over = {
        c: k
        for c, k in per_pair.items()
        if k > (SETTINGS.overlap_train if purposes[c] == Purpose.train else SETTINGS.overlap_eval)
    }
    assert over == {}, f"{len(over)} pairs over their overlap"
    assert leases == 0  # every lease was released by its decision
    (p50, p99), (alone50, alone99) = percentiles(results), percentiles(baseline)
    backend = load_url.split(":", 1)[0].split("+")[0]
    print(
        f"\nfault/load {backend}: {WORKERS} processes × {DECISIONS} decisions in {seconds:.1f} s "
        f"({WORKERS * DECISIONS / seconds:.0f}/s); per decision p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(one process alone: p50 {alone50:.1f} ms, p99 {alone99:.1f} ms); 0 lost, 0 duplicated, "
        f"0 over overlap; load average {load_before} before, {load_after} after (2 cores)"
    )
