"""The production pair selection: which of a round's candidate pairs people label, and in which order.

``rank_pairs`` is the ranker ``generation.api.generate_candidates`` takes (its ``pairs`` argument; the
CLI and the loop pass it): the stages stay independent, and the bench measures this very function.
It runs before the round's write transaction, so ``uncertain``'s pass over the policy never holds the
database's write lock.
"""

from __future__ import annotations

from core.config import Config
from labelling.pairs import PairTexts, all_pairs, select_pairs
from storage.models import Purpose

Messages = list[dict[str, str]]


def rank_pairs(
    config: Config,
    texts: dict[int, tuple[Messages, list[str]]],
    *,
    base_model: str,
    adapter_path: str | None,
    purpose: Purpose,
    seed: int,
) -> list[tuple[int, int, int]]:
    """Every pair of each prompt's distinct texts (prompt id -> (its messages, its texts)), in the order of
    ``labelling.pair_selection`` (``labelling.pairs.select_pairs``), as (prompt id, index a, index b) into
    that prompt's texts: at most ``generation.pairs_per_prompt`` per prompt and, for a train round,
    ``labelling.labels_per_round`` in all."""
    rewards = _rewards(config, texts, base_model, adapter_path)
    # A pair's key numbers the texts across prompts in storage order (what candidate ids number), so
    # the selection's tie order and seeded shuffle see the round as they always have.
    where: dict[int, tuple[int, int]] = {}  # key number -> (prompt id, index)
    pool = []
    for prompt_id, (_, texts_of) in texts.items():
        first = len(where)
        where.update({first + i: (prompt_id, i) for i in range(len(texts_of))})
        pool += [
            PairTexts(
                (first + a, first + b),
                prompt_id,
                texts_of[a],
                texts_of[b],
                margin=rewards.get((prompt_id, a), 0.0) - rewards.get((prompt_id, b), 0.0),
            )
            for a, b in all_pairs(range(len(texts_of)))
        ]
    chosen = select_pairs(
        config.labelling.pair_selection,
        pool,
        budget=config.labelling.labels_per_round if purpose == Purpose.train else None,
        per_prompt=config.generation.pairs_per_prompt,
        seed=seed,
    )
    return [(p.prompt_key, where[p.key[0]][1], where[p.key[1]][1]) for p in chosen]


def _rewards(
    config: Config, texts: dict[int, tuple[Messages, list[str]]], base_model: str, adapter_path: str | None
) -> dict[tuple[int, int], float]:
    """The policy's implicit reward of every text, by (prompt id, index), when the selection uses it:
    ``uncertain`` with an adapter (round 0's base policy has none: every margin is 0)."""
    if config.labelling.pair_selection != "uncertain" or not adapter_path:
        return {}
    from labelling.uncertainty import implicit_rewards

    keys = [(pid, i) for pid, (_, texts_of) in texts.items() for i in range(len(texts_of))]
    values = implicit_rewards(
        base_model,
        adapter_path,
        [(texts[pid][0], texts[pid][1][i]) for pid, i in keys],
        beta=config.train.pref_beta,
        batch_size=config.labelling.score_batch_size,
        cpu_threads=config.generation.cpu_threads,
    )
    return dict(zip(keys, values, strict=True))
