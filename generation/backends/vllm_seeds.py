"""Per-request seeds for vLLM that never line up across prompts.

vLLM seeds the ``n`` samples of a request with ``seed, seed + 1, ..., seed + n - 1``
(vllm/v1/engine/parallel_sampling.py). Seeding prompt ``i`` with ``seed + i`` therefore gives sample
``j`` of prompt ``i`` and sample ``j - 1`` of prompt ``i + 1`` the same random stream, and a model that
leans little on the prompt writes the same title for both. Spreading the request seeds over 2**31 by a
hash keeps every sample's stream apart and still reproducible.
"""

from __future__ import annotations

import hashlib

SEED_SPACE = 2**31 - 2**16  # room for seed + n - 1 below 2**31


def request_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th request of a call made with ``seed``."""
    digest = hashlib.sha256(f"prefloop:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_SPACE
