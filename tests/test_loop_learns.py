"""The loop learns: a round of oracle labels makes the tiny policy better by that oracle's standard.

From an empty database, with the real commands an operator types (each a subprocess):
prompts import → generate round 0 → simulate train labels → train-round → simulate the blind eval pairs →
report. report.json must show round-1 beating base under the oracle with win rate ≥ 0.65 (0.60 for the
labeller that flips 20% of its answers) and a Wilson 95% lower bound above 0.5; a second round must clear
the same bar and not lose to round 1 head-to-head. Scenarios use oracles that reward different things.
The commands and seeds are testkit.loop_learns's; `python -m bench.loop_seeds` plays them on more seeds.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from testkit.loop_learns import SCENARIOS, Outcome, Scenario, comparison, operator, play, round_zero

# The bars, set from the seeds table (README "Across seeds"), with the margins stated there. A labeller
# that flips 20% of its decisive answers leaves the policy 60% of the signal, and its win rate spread
# 0.15 over three seeds: its bar is lower, its Wilson lower bound must still clear 0.5.
MIN_WIN_RATE = 0.65
MIN_WIN_RATE_NOISY = 0.60

pytestmark = pytest.mark.slow

WORKERS = 2  # every step runs on one torch thread, so two scenarios at a time use the 2 cores, not fight


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every scenario played once from one shared round 0, two at a time (longest first, so the two
    workers finish together)."""
    started = time.perf_counter()
    start = tmp_path_factory.mktemp("round-0")
    first = operator(start)
    round_zero(first)
    ordered = sorted(SCENARIOS, key=lambda s: -s.rounds)
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {s.id: pool.submit(play, s, tmp_path_factory.mktemp(s.id), start=start) for s in ordered}
        results = {name: future.result() for name, future in futures.items()}
    print(f"\nall scenarios: {time.perf_counter() - started:.0f} s; round 0 (shared) {first.seconds}")
    for name, result in results.items():
        print(name, result.seconds)
    return results


def assert_beats(report: dict, model: str, bar: float, baseline: str = "base") -> dict:
    c = comparison(report, model, baseline)
    summary = f"{model} vs {baseline}: win rate {c['win_rate']:.3f} {c['ci95']} n={c['n']} (bar {bar})"
    print(summary)
    assert c["win_rate"] >= bar and c["ci95"][0] > 0.5, summary
    return c


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_a_round_of_oracle_labels_beats_base_under_that_oracle(scenario: Scenario, outcomes):
    bar = MIN_WIN_RATE_NOISY if scenario.noise else MIN_WIN_RATE
    outcome = outcomes[scenario.id]
    assert outcome.error is None, outcome.error
    first = assert_beats(outcome.reports["round-1"], "round-1", bar)
    if scenario.rounds >= 2:
        report = outcome.reports["round-2"]
        second = assert_beats(report, "round-2", bar)
        head_to_head = comparison(report, "round-2", "round-1")
        print(
            f"round-2 vs round-1: {head_to_head['win_rate']:.3f} {head_to_head['ci95']}; "
            f"vs base {second['win_rate']:.3f} (round-1 {first['win_rate']:.3f})"
        )
        assert head_to_head["ci95"][1] >= 0.5, "round 2 is significantly worse than round 1"
    # winning must not break the model: the report's health check flags nothing for this round
    flags = outcome.reports[f"round-{scenario.rounds}"]["flags"]
    assert not flags, flags
