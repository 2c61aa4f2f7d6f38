"""Which candidates to compare: pure functions over candidate ids and texts (no database, no model).

Two rules for a budget of pairs per prompt (``generation.pair_selection``):

- ``balanced`` (``budget_pairs``, ``cross_pairs``): pairs are taken one at a time, each time the pair whose
  two candidates have so far been used least (lowest sum of uses, then lowest max), ties broken by a seeded
  shuffle. So every candidate is compared before any is compared twice, uses differ by at most one where
  the budget allows, and the same seed gives the same pairs.
- ``most-different`` (``different_pairs``): the pairs whose texts differ most (``difference``). A
  near-identical pair mostly earns a tie or a coin flip that teaches DPO nothing.

``bench/bench_label_efficiency.py`` measures the most-different rule on a labelling budget spread over
prompts (``select_pairs``): ``most_different_pairs`` takes every prompt's pairs in the order
``different_pairs`` ranks them, one layer at a time, so a budget of k pairs per prompt picks exactly the
pairs production queues with ``pairs_per_prompt = k``. Its baseline ``random`` is what the seed did.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import TypeVar

T = TypeVar("T", bound=Hashable)
P = TypeVar("P")
_TOKEN = re.compile(r"\w+")


def all_pairs(ids: Sequence[T]) -> list[tuple[T, T]]:
    """Every unordered pair once: C(n, 2) of them, in input order."""
    return list(combinations(dict.fromkeys(ids), 2))


def balanced_pick(pairs: list[tuple[T, T]], budget: int, seed: int) -> list[tuple[T, T]]:
    """``budget`` of ``pairs`` by the least-used-first rule in the module docstring."""
    pool = list(pairs)
    random.Random(seed).shuffle(pool)
    if budget >= len(pool):
        return pool
    uses: Counter[T] = Counter()
    chosen: list[tuple[T, T]] = []
    for _ in range(max(0, budget)):
        best = min(
            range(len(pool)),
            key=lambda i: (uses[pool[i][0]] + uses[pool[i][1]], max(uses[x] for x in pool[i])),
        )
        a, b = pool.pop(best)
        uses.update((a, b))
        chosen.append((a, b))
    return chosen


def budget_pairs(ids: Sequence[T], budget: int, seed: int) -> list[tuple[T, T]]:
    """At most ``budget`` pairs of one prompt's candidates, every candidate covered before repeats."""
    return balanced_pick(all_pairs(ids), budget, seed)


def cross_pairs(ids_a: Sequence[T], ids_b: Sequence[T], k: int, seed: int) -> list[tuple[T, T]]:
    """``k`` pairs (one of model A's candidates, one of model B's) for one prompt, each candidate used
    evenly; at most len(a) × len(b) pairs. The first element always comes from ``ids_a``."""
    return balanced_pick(list(product(dict.fromkeys(ids_a), dict.fromkeys(ids_b))), k, seed)


def difference(a: str, b: str) -> float:
    """0 for identical texts, up to 2: word-set Jaccard distance plus relative length difference."""
    words_a, words_b = set(_TOKEN.findall(a.casefold())), set(_TOKEN.findall(b.casefold()))
    union = words_a | words_b
    jaccard_distance = 1 - len(words_a & words_b) / len(union) if union else 0.0
    longest = max(len(a), len(b))
    return jaccard_distance + (abs(len(a) - len(b)) / longest if longest else 0.0)


def most_different_first(pairs: Sequence[P], texts: Callable[[P], tuple[str, str]]) -> list[P]:
    """``pairs`` by ``difference`` of their two texts, largest first; ties keep input order."""
    return sorted(pairs, key=lambda pair: -difference(*texts(pair)))


def different_pairs(texts: Mapping[T, str], budget: int) -> list[tuple[T, T]]:
    """The ``budget`` pairs of one prompt's candidates (id -> text) differing most; ties keep input order."""
    ranked = most_different_first(all_pairs(list(texts)), lambda pair: (texts[pair[0]], texts[pair[1]]))
    return ranked[: max(0, budget)]


# -- a labelling budget over many prompts (the label-efficiency benchmark) ------------------------------


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
    ranked = [most_different_first(group, _texts) for group in by_prompt.values()]
    chosen: list[PairTexts] = []
    depth = 0
    while len(chosen) < budget and any(depth < len(group) for group in ranked):
        layer = most_different_first([group[depth] for group in ranked if depth < len(group)], _texts)
        chosen += layer[: budget - len(chosen)]
        depth += 1
    return chosen


def _texts(pair: PairTexts) -> tuple[str, str]:
    return pair.text_a, pair.text_b


STRATEGIES = ("random", "most-different")


def select_pairs(strategy: str, pairs: Sequence[PairTexts], budget: int, seed: int = 0) -> list[PairTexts]:
    if strategy == "random":
        return random_pairs(pairs, budget, random.Random(seed))
    if strategy == "most-different":
        return most_different_pairs(pairs, budget)
    raise ValueError(f"unknown pair selection {strategy!r}; known: {', '.join(STRATEGIES)}")
