"""Pair selection for a labelling budget: random baseline and most-different-first, spread over prompts."""

from __future__ import annotations

import pytest

from labelling.pairs import PairTexts, most_different_pairs, select_pairs


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
    chosen = most_different_pairs(pairs, 3)
    assert sorted(p.prompt_key for p in chosen) == [1, 2, 3]  # one per prompt first
    assert {p.key for p in chosen} == {2, 4, 5}  # the more different pair of prompts 1 and 2
    everything = most_different_pairs(pairs, 100)
    assert sorted(p.key for p in everything) == [1, 2, 3, 4, 5]
    assert {p.key for p in everything[3:]} == {1, 3}  # second layer after the first


def test_random_is_seeded_and_respects_the_budget():
    pairs = _pairs()
    assert select_pairs("random", pairs, 3, seed=7) == select_pairs("random", pairs, 3, seed=7)
    assert len(select_pairs("random", pairs, 3)) == 3 and len(select_pairs("random", pairs, 99)) == 5
    assert len({p.key for p in select_pairs("random", pairs, 5)}) == 5  # without replacement
    with pytest.raises(ValueError, match="unknown pair selection 'smart'"):
        select_pairs("smart", pairs, 3)
