"""The label-efficiency bench's arithmetic: curve reading, blind head-to-head scoring, table rows."""

from __future__ import annotations

import math

from bench.bench_label_efficiency import Arm, Plan, head_to_head, labels_needed, rows_for
from labelling.oracles import shorter


def test_labels_needed_is_the_first_budget_reaching_the_target():
    curve = [(400, 0.71), (50, 0.55), (100, 0.69), (200, 0.66)]
    assert labels_needed(curve, 0.68) == 100
    assert labels_needed(curve, 0.9) is None


def test_head_to_head_scores_the_new_model_whichever_side_it_is_shown_on():
    prompts = [("p1", []), ("p2", [])]
    new = [["short", "a tie!"], ["tiny", "much much longer"]]
    base = [["a long base title", "a tie?"], ["a long base title", "mid"]]
    assert head_to_head(shorter, prompts, new, base, seed=0) == (2, 1, 1)
    assert head_to_head(shorter, prompts, new, base, seed=99) == (2, 1, 1)  # display order does not matter


def test_rows_compare_each_budget_with_random_and_report_labels_needed():
    plan = Plan(("keywords",), ("random", "most-different"), (50, 100), 10)
    arms = [
        Arm("keywords", "random", 50, 30, 50, 50, 0, 1.0),
        Arm("keywords", "random", 100, 60, 60, 40, 0, 1.0),
        Arm("keywords", "most-different", 50, 40, 70, 30, 0, 1.0),
        Arm("keywords", "most-different", 100, 80, 80, 20, 0, 1.0),
    ]
    rows = rows_for(arms, plan)
    assert [r.name for r in rows] == [
        "keywords: win rate vs base after 50 labels, most-different pairs",
        "keywords: win rate vs base after 100 labels, most-different pairs",
        "keywords: labels needed for the seed's 68%, most-different pairs",
    ]
    assert (rows[0].value, rows[0].baseline, rows[0].ratio) == (0.7, 0.5, 1.4)
    assert "decisive labels 40/30" in rows[0].note and "95% CI [0.60, 0.78]" in rows[0].note
    assert rows[2].value == 50 and rows[2].baseline is None  # random never reached 68%
    assert "no baseline: random did not reach it within 100" in rows[2].note
    arms[1] = Arm("keywords", "random", 100, 60, 70, 30, 0, 1.0)  # now random reaches 70% at 100 labels
    reached = rows_for(arms, plan)[2]
    assert (reached.value, reached.baseline, reached.ratio) == (50, 100, 0.5)
    assert "no baseline" not in reached.note
    plan_short = Plan(("keywords",), ("random", "most-different"), (50,), 10)
    weak = [Arm("keywords", s, 50, 10, 5, 5, 0, 1.0) for s in ("random", "most-different")]
    assert math.isnan(rows_for(weak, plan_short)[-1].value)
