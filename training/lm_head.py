"""TRL's fused LM head, scoring the completion positions only on a CPU as it does on a GPU.

TRL 1.16's ``add_fused_lm_head`` projects only the positions whose label is not -100 ("compact") when
Triton runs the kernel; elsewhere it projects every position and zeroes the rest, so that tile shapes
stay fixed for compilers (Neuron). In eager CPU training that costs the 576 x 49,152 output layer at
every prompt position too (a title is ~15 of ~55 tokens). The compact path is TRL's own code and gives
the same log-probabilities (tests/test_prefix_cache.py); only the choice of path is changed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def completion_positions_only() -> Iterator[None]:
    """Within the block, TRL's fused LM head takes its compact path on CPU devices too."""
    from trl.trainer import utils

    original = utils._use_triton

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    utils._use_triton = compact
    try:
        yield
    finally:
        utils._use_triton = original
