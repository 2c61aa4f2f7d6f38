"""The label-efficiency bench's reading of its arms: the bar, labels-to-68%, the table, the rows, the file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

from bench.bench_label_efficiency import (
    Arm,
    ArmResult,
    RoundResult,
    ablation_table,
    arms_of,
    labels_to_target,
    markdown_table,
    meets_bar,
    plan,
    read_results,
    rows_for,
    seeds_table,
)


def point(labels: int, win: float, lo: float, hi: float, flags: list[str] | None = None) -> RoundResult:
    return RoundResult(labels, labels // 2, win, (lo, hi), 120, flags or [], None)


def test_the_bar_needs_the_rate_the_lower_bound_and_clean_health():
    assert meets_bar(point(100, 0.70, 0.61, 0.78))
    assert not meets_bar(point(100, 0.67, 0.58, 0.75))  # below 0.68
    assert not meets_bar(point(100, 0.70, 0.49, 0.85))  # interval reaches 0.5
    assert not meets_bar(point(100, 0.90, 0.84, 0.94, ["round-1: median length -60%"]))  # health flagged


def test_labels_to_target_is_the_fewest_labels_meeting_the_bar_in_any_order():
    points = [point(300, 0.80, 0.72, 0.86), point(100, 0.60, 0.51, 0.68), point(200, 0.71, 0.62, 0.78)]
    assert labels_to_target(points) == 200
    assert labels_to_target(points[::-1]) == 200
    assert labels_to_target([point(100, 0.60, 0.51, 0.68)]) is None


def results() -> list[ArmResult]:
    staged = [point(100, 0.55, 0.46, 0.63), point(200, 0.72, 0.63, 0.79), point(300, 0.81, 0.73, 0.87)]
    return [
        ArmResult(Arm("shorter", "random", 0.0, 3, 100), [point(100, 0.5, 0.41, 0.59)] * 3, 10.0),
        ArmResult(Arm("shorter", "most-different", 0.0, 3, 100), staged, 10.0),
        ArmResult(Arm("shorter", "most-different", 0.0, 1, 300), [point(300, 0.75, 0.67, 0.82)], 10.0),
        ArmResult(Arm("shorter", "uncertain", 0.0, 3, 100), [], 3.0, error="RuntimeError: boom"),
    ]


def test_table_rows_and_the_results_file_agree(tmp_path):
    table = markdown_table(results(), noise=0.0)
    line = next(row for row in table.splitlines() if "most-different" in row)
    assert "**0.72 [0.63, 0.79]**" in line and "0.55 [0.46, 0.63]" in line
    assert line.rstrip(" |").endswith("200")
    assert "not within 300" in next(row for row in table.splitlines() if "| random |" in row)
    rows = {r.name: r for r in rows_for(results())}
    md = rows["shorter, noise 0%: labels to 68% (Wilson low > 0.5), most-different"]
    assert md.value == 200 and md.baseline is None and "random: not within 300" in md.note
    assert math.isnan(rows["shorter, noise 0%: labels to 68% (Wilson low > 0.5), uncertain"].value)
    file = tmp_path / "arms.jsonl"
    file.write_text("".join(json.dumps(asdict(r)) + "\n" for r in results()))
    assert read_results(file) == results()


def test_the_full_plan_compares_schedules_and_noise_at_equal_labels():
    arms = plan(quick=False)
    assert len({a.id for a in arms}) == len(arms)
    assert {a.rounds * a.labels_per_round for a in arms} == {300}
    assert {a.noise for a in arms} == {0.0, 0.2}
    assert len({a.oracle for a in arms}) >= 4
    assert any(a.oracle.endswith(".py:no_colon") for a in arms)  # an unseen rule, through FILE.py:FUNC


def test_the_default_base_plan_runs_the_default_selection_on_every_rule_and_noise():
    arms = plan(quick=False, base="smollm2-135m")
    assert {a.base for a in arms} == {"smollm2-135m"} and len({a.id for a in arms}) == len(arms)
    defaults = {(a.oracle, a.noise) for a in arms if a.strategy == "most-different" and a.rounds == 3}
    assert len({o for o, _ in defaults}) >= 4 and {n for _, n in defaults} == {0.0, 0.2}
    assert all(a.id.startswith("smollm2-135m|") for a in arms)
    assert not plan(quick=False)[0].id.startswith("tiny")  # the tiny arms keep their ids (the file's)


def test_an_ablation_is_its_own_arm_and_row_beside_the_default(tmp_path):
    default = Arm("number", "most-different", 0.0, 3, 100, base="smollm2-135m")
    tried = Arm("number", "most-different", 0.0, 3, 100, base="smollm2-135m", sets=("train.min_steps=32",))
    assert default.id != tried.id and tried.id.endswith("|train.min_steps=32")
    found = [
        ArmResult(default, [point(100, 0.52, 0.44, 0.60)], 1.0),
        ArmResult(tried, [point(100, 0.71, 0.62, 0.79), point(200, 0.80, 0.72, 0.86)], 1.0),
    ]
    file = tmp_path / "arms.jsonl"
    file.write_text("".join(json.dumps(asdict(r)) + "\n" for r in found))
    assert read_results(file) == found  # sets come back as a tuple
    assert arms_of(found, "number", "most-different", 0.0, "smollm2-135m") == found[:1]
    lines = ablation_table(found, "smollm2-135m").splitlines()
    assert "| 0% | 0 | defaults | 0.52 [0.44, 0.60] | — | — |" in lines[2]
    assert "| 0 | `train.min_steps=32` | **0.71 [0.62, 0.79]** | **0.80 [0.72, 0.86]** | — |" in lines[3]
    assert ablation_table(found) == ""  # none on the tiny model
    # another seed's ablation sits beside that seed's default, not seed 0's
    seed1 = [
        ArmResult(replace(default, seed=1), [point(100, 0.60, 0.51, 0.68)], 1.0),
        ArmResult(replace(tried, seed=1), [point(100, 0.58, 0.49, 0.66)], 1.0),
    ]
    lines = ablation_table(found + seed1, "smollm2-135m").splitlines()
    assert len(lines) == 6 and "| 0% | 1 | defaults | 0.60 [0.51, 0.68] |" in lines[4]
    assert "| 1 | `train.min_steps=32` | 0.58 [0.49, 0.66] |" in lines[5]


def test_a_cell_names_the_step_the_health_gate_published_when_it_was_not_the_last():
    gated = [
        replace(point(100, 0.66, 0.58, 0.74), chosen_step=(9, 36)),
        replace(point(200, 0.71, 0.62, 0.78), chosen_step=(46, 46)),
        point(300, 0.86, 0.77, 0.92),
    ]
    table = markdown_table([ArmResult(Arm("shorter", "most-different", 0.0, 3, 100), gated, 1.0)], 0.0)
    line = next(row for row in table.splitlines() if "most-different" in row)
    assert "| 0.66 [0.58, 0.74] @9/36 | **0.71 [0.62, 0.78]** | **0.86 [0.77, 0.92]** |" in line


def test_other_seeds_get_their_own_table_and_leave_the_main_one_at_seed_0():
    arm = Arm("shorter", "most-different", 0.0, 3, 100)
    other = [point(100, 0.71, 0.62, 0.78), point(200, 0.50, 0.41, 0.59)]
    lone = ArmResult(Arm("number", "most-different", 0.0, 3, 100), [point(100, 0.5, 0.41, 0.59)], 1.0)
    found = [*results(), ArmResult(replace(arm, seed=1), other, 1.0), lone]
    assert markdown_table(found[:-1], 0.0) == markdown_table(results(), 0.0)  # seed 1 does not lower it
    assert seeds_table(results()) == ""  # one seed: nothing to add
    lines = seeds_table(found).splitlines()
    assert lines[2].startswith("| `shorter` | 0% | 0 | 0.55 [0.46, 0.63] |") and lines[2].endswith("| 200 |")
    assert lines[3] == "| `shorter` | 0% | 1 | **0.71 [0.62, 0.78]** | 0.50 [0.41, 0.59] | — | 100 |"
    assert len(lines) == 4  # `number` ran at one seed only
