"""Which pairs to spend a labelling budget on: pure functions, measured by ``bench/bench_label_efficiency``.

- ``random_pairs``: the baseline, what the seed did (every pair, or a random share of them);
- ``most_different_pairs``: pairs whose two candidates differ most (``labelling.pairs.difference``:
  length and words), spread evenly over prompts. Near-identical candidates mostly earn a tie or a
  coin-flip label that teaches DPO nothing; a clearly different pair is more often decided, and decided
  for a reason the policy can learn.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from labelling.pairs import difference


@dataclass(frozen=True)
class PairTexts:
    """A candidate pair as selection sees it: no labels, no model names (nothing it could cheat with)."""

    key: int  # e.g. the comparison id
    prompt_key: int
    text_a: str
    text_b: str


def random_pairs(pairs: Sequence[PairTexts], budget: int, rng: random.Random) -> list[PairTexts]:
    """``budget`` pairs drawn uniformly without replacement (all of them if fewer)."""
    return rng.sample(list(pairs), min(budget, len(pairs)))


def most_different_pairs(pairs: Sequence[PairTexts], budget: int) -> list[PairTexts]:
    """The most different pair of every prompt first, then every prompt's second, and so on.

    Round-robin over prompts keeps the budget spread across topics (a policy must generalise to new
    prompts); within a pass, more different pairs come first. Ties in difference keep input order.
    """
    by_prompt: dict[int, list[PairTexts]] = defaultdict(list)
    for pair in pairs:
        by_prompt[pair.prompt_key].append(pair)
    ranked = [sorted(group, key=lambda p: -difference(p.text_a, p.text_b)) for group in by_prompt.values()]
    chosen: list[PairTexts] = []
    depth = 0
    while len(chosen) < budget and any(depth < len(group) for group in ranked):
        layer = [group[depth] for group in ranked if depth < len(group)]
        layer.sort(key=lambda p: -difference(p.text_a, p.text_b))
        chosen += layer[: budget - len(chosen)]
        depth += 1
    return chosen


STRATEGIES = ("random", "most-different")


def select_pairs(strategy: str, pairs: Sequence[PairTexts], budget: int, seed: int = 0) -> list[PairTexts]:
    if strategy == "random":
        return random_pairs(pairs, budget, random.Random(seed))
    if strategy == "most-different":
        return most_different_pairs(pairs, budget)
    raise ValueError(f"unknown pair selection {strategy!r}; known: {', '.join(STRATEGIES)}")
