"""Which candidates to compare, and in which order people label them: pure functions (no database, no model).

Eval pairs (``cross_pairs``): one candidate of each model per pair, each candidate used evenly
(``balanced_pick``: the pair whose two candidates were used least so far, ties by a seeded shuffle).

Train pairs (``select_pairs``, config ``labelling.pair_selection``): every candidate pair of a round,
ranked; the rank is stored (``Comparison.queue_rank``) and the assignment queue serves rank 0 first, so
the first N labels are the N pairs the selection put first. ``labelling.labels_per_round`` queues only the
first N; ``generation.pairs_per_prompt`` caps each prompt. Strategies (``STRATEGIES``):

- ``random``: a seeded uniform shuffle (what the seed did).
- ``most-different``: round-robin over prompts, so a budget covers many topics; within a prompt and within
  a pass, pairs whose texts differ more (``difference``) first. A near-identical pair mostly earns a tie
  or a coin flip that teaches DPO nothing.
- ``uncertain``: the same round-robin, ranked by ``difference × 4·σ(m)·σ(−m)`` where m is the current
  policy's DPO implicit reward margin of the pair (``labelling.uncertainty``). 4σ(m)σ(−m) is the DPO
  gradient weight expected when the label is drawn from the policy's own belief σ(m): 1 at m = 0 (the
  policy cannot tell the two apart), → 0 for a pair it already ranks confidently. Without an adapter
  (round 0) every m is 0 and the rule is exactly ``most-different``.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
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


# -- train pairs: one ranked selection over a round's prompts -------------------------------------------


@dataclass(frozen=True)
class PairTexts:
    """A candidate pair as selection sees it: texts and the policy's margin; no labels, no model names
    (nothing a strategy could cheat with)."""

    key: int | tuple[int, int]  # the stored pair: a comparison id, or its (candidate_a_id, candidate_b_id)
    prompt_key: int
    text_a: str
    text_b: str
    margin: float = 0.0  # the policy's DPO implicit reward r(a) − r(b) (labelling.uncertainty); 0: none


STRATEGIES = ("random", "most-different", "uncertain")


def expected_gradient_weight(margin: float) -> float:
    """4·σ(m)·σ(−m) = 1 / cosh²(m/2): 1 at m = 0, falling to 0 as |m| grows (the module docstring)."""
    half = abs(margin) / 2
    return 0.0 if half > 350 else 1.0 / math.cosh(half) ** 2


def pair_score(strategy: str, pair: PairTexts) -> float:
    """How early ``pair`` is worth a label under ``strategy`` (higher first); ``random`` has no score."""
    if strategy == "most-different":
        return difference(pair.text_a, pair.text_b)
    if strategy == "uncertain":
        return difference(pair.text_a, pair.text_b) * expected_gradient_weight(pair.margin)
    raise ValueError(f"pair selection {strategy!r} does not score pairs")


def round_robin(pairs: Sequence[PairTexts], score: Callable[[PairTexts], float]) -> list[PairTexts]:
    """Every prompt's best pair first, then every prompt's second, and so on; within a prompt and
    within a pass, higher ``score`` first (ties keep input order)."""
    by_prompt: dict[int, list[PairTexts]] = defaultdict(list)
    for pair in pairs:
        by_prompt[pair.prompt_key].append(pair)
    ranked = [sorted(group, key=lambda p: -score(p)) for group in by_prompt.values()]
    ordered: list[PairTexts] = []
    for depth in range(max((len(group) for group in ranked), default=0)):
        ordered += sorted((group[depth] for group in ranked if depth < len(group)), key=lambda p: -score(p))
    return ordered


def select_pairs(
    strategy: str,
    pairs: Sequence[PairTexts],
    *,
    budget: int | None = None,
    per_prompt: int | None = None,
    seed: int = 0,
) -> list[PairTexts]:
    """``pairs`` in the order people should label them under ``strategy``: at most ``per_prompt`` of a
    prompt, at most ``budget`` in all (None: no cap). The input order does not matter (pairs are taken
    by key first); the same pairs and seed give the same order."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pair selection {strategy!r}; known: {', '.join(STRATEGIES)}")
    pool = sorted(pairs, key=lambda p: p.key)
    if strategy == "random":
        random.Random(seed).shuffle(pool)
        ordered = pool
    else:
        ordered = round_robin(pool, lambda p: pair_score(strategy, p))
    if per_prompt is not None:
        seen: Counter[int] = Counter()
        kept = []
        for pair in ordered:
            seen[pair.prompt_key] += 1
            if seen[pair.prompt_key] <= per_prompt:
                kept.append(pair)
        ordered = kept
    return ordered if budget is None else ordered[: max(0, budget)]
