"""Pairs of candidates: all pairs, even use of candidates (balanced_pick, eval pairs), text difference."""

from __future__ import annotations

from collections import Counter
from math import comb

import pytest

from labelling.pairs import PairTexts, all_pairs, balanced_pick, cross_pairs, difference, select_pairs


def test_all_pairs_is_every_unordered_pair_once() -> None:
    pairs = all_pairs([4, 7, 9, 11, 20])
    assert len(pairs) == comb(5, 2) == 10
    assert len({frozenset(p) for p in pairs}) == 10
    assert all_pairs([1, 1, 2]) == [(1, 2)]  # a repeated id is one candidate
    assert all_pairs([3]) == []


@pytest.mark.parametrize("n, budget", [(5, 3), (5, 4), (6, 3), (7, 5), (10, 12)])
def test_balanced_pick_covers_every_candidate_before_repeating(n: int, budget: int) -> None:
    ids = list(range(100, 100 + n))
    pairs = balanced_pick(all_pairs(ids), budget, seed=1)
    assert len(pairs) == budget
    assert len({frozenset(p) for p in pairs}) == budget
    uses = Counter(x for p in pairs for x in p)
    if 2 * budget >= n:
        assert set(uses) == set(ids)  # everyone compared at least once
    assert max(uses.values()) - min(uses[i] for i in ids) <= 1


def test_balanced_pick_is_seeded_and_capped() -> None:
    ids = list(range(6))
    assert balanced_pick(all_pairs(ids), 4, seed=3) == balanced_pick(all_pairs(ids), 4, seed=3)
    assert {frozenset(p) for s in range(5) for p in balanced_pick(all_pairs(ids), 4, seed=s)} != {
        frozenset(p) for p in balanced_pick(all_pairs(ids), 4, seed=0)
    }
    assert sorted(map(sorted, balanced_pick(all_pairs(ids), 99, seed=0))) == sorted(
        map(sorted, all_pairs(ids))
    )
    assert balanced_pick(all_pairs(ids), 0, seed=0) == []


def test_cross_pairs_use_each_model_evenly() -> None:
    a, b = [1, 2, 3, 4, 5], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    pairs = cross_pairs(a, b, 10, seed=0)
    assert len(pairs) == len(set(pairs)) == 10
    assert all(x in a and y in b for x, y in pairs)
    assert set(Counter(x for x, _ in pairs).values()) == {2}
    assert set(Counter(y for _, y in pairs).values()) == {1}
    assert len(cross_pairs([1, 2], [3], 10, seed=0)) == 2


def test_difference_grows_with_word_and_length_differences():
    assert difference("Fine-Tune LLMs Fast", "fine-tune llms fast") == 0
    same_words_longer = difference("LLMs fast", "LLMs fast LLMs fast")  # words equal, length doubles
    assert same_words_longer == pytest.approx(10 / 19)
    assert difference("abc def", "ghi jkl") == pytest.approx(1.0)  # no shared word, equal length
    assert difference("", "") == 0


def test_one_prompts_pairs_go_most_different_first() -> None:
    texts = {
        1: "Fine-Tune LLMs Fast",
        2: "Fine-Tune LLMs fast!",  # near-duplicate of 1
        3: "5 Steps to Your First Local Model",
        4: "Fine-Tune LLMs Fast Today",
    }
    pool = [PairTexts((a, b), 0, texts[a], texts[b]) for a, b in all_pairs(list(texts))]
    ranked = [p.key for p in select_pairs("most-different", pool)]
    assert sorted(ranked) == sorted(all_pairs(list(texts)))  # all of them
    gaps = [difference(texts[a], texts[b]) for a, b in ranked]
    assert gaps == sorted(gaps, reverse=True)
    assert ranked[-1] == (1, 2)  # the near-duplicate pair is the last worth a label
