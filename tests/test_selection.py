"""Train-pair selection (labelling.pairs.select_pairs): order, caps, determinism, the model-based rule."""

from __future__ import annotations

import math
import random

import pytest

from labelling.pairs import (
    STRATEGIES,
    PairTexts,
    difference,
    expected_gradient_weight,
    round_robin,
    select_pairs,
)


def _pairs() -> list[PairTexts]:
    texts = {
        1: [("Fine-Tune LLMs", "Fine-Tune LLMs!"), ("Fine-Tune LLMs", "Cooking pasta at home tonight")],
        2: [("RLHF explained", "RLHF explained simply"), ("RLHF", "Why your reward model lies to you")],
        3: [("DPO in 5 minutes", "DPO in five minutes")],
    }
    key = 0
    pairs = []
    for prompt_key, items in texts.items():
        for a, b in items:
            key += 1
            pairs.append(PairTexts(key, prompt_key, a, b))
    return pairs


def test_most_different_takes_each_prompts_best_pair_before_any_second_pair():
    pairs = _pairs()
    chosen = select_pairs("most-different", pairs, budget=3)
    assert sorted(p.prompt_key for p in chosen) == [1, 2, 3]  # one per prompt first
    assert {p.key for p in chosen} == {2, 4, 5}  # the more different pair of prompts 1 and 2
    everything = select_pairs("most-different", pairs)
    assert sorted(p.key for p in everything) == [1, 2, 3, 4, 5]
    assert {p.key for p in everything[3:]} == {1, 3}  # second layer after the first
    first = [difference(p.text_a, p.text_b) for p in everything[:3]]
    assert first == sorted(first, reverse=True)  # within a pass, more different first


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_order_does_not_depend_on_the_input_order_and_repeats(strategy):
    pairs = _pairs()
    shuffled = list(pairs)
    random.Random(3).shuffle(shuffled)
    assert select_pairs(strategy, shuffled, seed=7) == select_pairs(strategy, pairs, seed=7)
    assert select_pairs(strategy, pairs, seed=7) == select_pairs(strategy, pairs, seed=7)
    assert sorted(p.key for p in select_pairs(strategy, pairs)) == [1, 2, 3, 4, 5]  # each pair once


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_budget_and_per_prompt_caps(strategy):
    pairs = _pairs()
    assert len(select_pairs(strategy, pairs, budget=3)) == 3
    assert len(select_pairs(strategy, pairs, budget=99)) == 5
    assert select_pairs(strategy, pairs, budget=0) == []
    capped = select_pairs(strategy, pairs, per_prompt=1)
    assert sorted(p.prompt_key for p in capped) == [1, 2, 3]
    full = select_pairs(strategy, pairs, seed=4)
    assert select_pairs(strategy, pairs, budget=2, seed=4) == full[:2]  # a budget is the order's head


def test_random_is_a_seeded_shuffle_and_unknown_names_fail():
    pairs = _pairs()
    orders = {tuple(p.key for p in select_pairs("random", pairs, seed=s)) for s in range(10)}
    assert len(orders) > 1
    with pytest.raises(ValueError, match="unknown pair selection 'smart'; known: random, most-different"):
        select_pairs("smart", pairs)


def test_uncertain_without_margins_is_most_different():
    """Round 0 (no adapter): every margin is 0, so the model-based rule falls back to text difference."""
    pairs = _pairs()
    assert select_pairs("uncertain", pairs) == select_pairs("most-different", pairs)


def test_uncertain_prefers_the_pair_the_policy_cannot_tell_apart():
    equal = "Learn DPO today", "Why reward models lie"
    sure = PairTexts(1, 1, *equal, margin=4.0)
    unsure = PairTexts(2, 1, *equal, margin=0.1)
    sure_other_sign = PairTexts(3, 1, *equal, margin=-4.0)
    assert [p.key for p in select_pairs("uncertain", [sure, unsure, sure_other_sign])] == [2, 1, 3]
    # a near-duplicate pair at margin 0 still loses to a different pair of small margin: ties teach nothing
    duplicate = PairTexts(4, 1, "Learn DPO today", "Learn DPO today!", margin=0.0)
    assert select_pairs("uncertain", [duplicate, unsure])[0] == unsure


def test_expected_gradient_weight_is_four_sigma_sigma():
    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    for m in (-3.0, -0.5, 0.0, 0.7, 5.0):
        assert expected_gradient_weight(m) == pytest.approx(4 * sigmoid(m) * sigmoid(-m))
    assert expected_gradient_weight(1e6) == 0.0


def test_round_robin_spreads_a_budget_over_prompts():
    pairs = [PairTexts(k, k % 4, f"a{k}", f"b {k} longer") for k in range(40)]
    first = round_robin(pairs, lambda p: 0.0)[:4]
    assert sorted(p.prompt_key for p in first) == [0, 1, 2, 3]


def test_the_config_offers_exactly_the_strategies_select_pairs_knows():
    from typing import get_args

    from core.config import LabellingConfig, PairSelection

    assert get_args(PairSelection) == STRATEGIES
    assert LabellingConfig().pair_selection in STRATEGIES
