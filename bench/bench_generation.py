"""Transformers backend speed: one round's candidates (114 seed ideas x 5) with the embedded model.

Rows, each against a baseline measured in the same run:
- batched (``generation.batch_size`` sequences per ``generate`` call) vs one prompt at a time (its 5
  samples per call) — the target is >= 5x;
- the 570 candidates' wall time vs the 20 s target;
- a LoRA adapter merged into the weights vs the base model, and merged vs unmerged (peft) — this is
  how ``loading.MERGE_BY_DEFAULT`` was chosen.
Quick mode: 24 ideas (the one-at-a-time baseline 12), same rows.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import BenchRow, machine, row
from generation.backends.base import Policy, SamplingParams

AREA = "generation"
TARGET_SECONDS = 20.0


def _rate(backend, prompts, policy: Policy, sampling: SamplingParams) -> tuple[float, float, float]:
    """(seconds, candidates/s, tokens/s) of one ``generate`` call over ``prompts``."""
    started = time.perf_counter()
    out = backend.generate(prompts, policy, sampling)
    seconds = time.perf_counter() - started
    cands = sum(len(c) for c in out)
    return seconds, cands / seconds, sum(g.n_tokens for c in out for g in c) / seconds


def run(quick: bool = False) -> list[BenchRow]:
    import torch

    from generation.backends.transformers_backend import TransformersBackend
    from generation.demo_adapter import save_random_adapter
    from generation.loading import EMBEDDED_DIR, pick_dtype
    from generation.tiny_model.data import seed_idea_messages
    from prefloop.config import EMBEDDED_MODEL, GenerationConfig

    batch = GenerationConfig().batch_size
    prompts = seed_idea_messages(24 if quick else None)
    single_prompts = prompts[: 12 if quick else 40]
    sampling = SamplingParams(n=5, seed=0)
    base = Policy("base", EMBEDDED_MODEL)
    env = f"{machine()}, torch threads {torch.get_num_threads()}, {pick_dtype()}".replace("torch.", "")
    batched = TransformersBackend(batch_size=batch)
    batched.generate(prompts[:2], base, sampling)  # load + warm up outside the timings
    secs, cps, tps = _rate(batched, prompts, base, sampling)
    one_by_one = [_rate(batched, [p], base, sampling) for p in single_prompts]
    single_cps = len(single_prompts) * sampling.n / sum(s for s, _, _ in one_by_one)
    rows = [
        row(
            AREA,
            f"{len(prompts)} prompts x 5, transformers batched ({batch} sequences/call)",
            cps,
            "candidates/s",
            f"one prompt at a time ({len(single_prompts)} prompts)",
            single_cps,
            f"higher is better; target ratio >= 5; batched {tps:.0f} tokens/s; {env}",
        ),
        row(
            AREA,
            "570 candidates (114 x 5) at the batched rate",
            570 / cps,
            "s",
            "target",
            TARGET_SECONDS,
            f"lower is better; ratio <= 1 meets the target; measured {secs:.1f} s for {len(prompts)} prompts",
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        adapter = str(save_random_adapter(EMBEDDED_DIR, Path(tmp) / "lora", rank=8, lora_alpha=1))
        tuned = Policy("round-1", EMBEDDED_MODEL, adapter, lora_id=1)
        unmerged = TransformersBackend(batch_size=batch, merge=False)
        unmerged.generate(prompts[:2], tuned, sampling)
        _, un_cps, un_tps = _rate(unmerged, prompts, tuned, sampling)
        unmerged.close()
        batched.generate(prompts[:2], tuned, sampling)
        _, ad_cps, ad_tps = _rate(batched, prompts, tuned, sampling)
    batched.close()
    rows += [
        row(
            AREA,
            "adapter (LoRA r8, merged), batched",
            ad_tps,
            "tokens/s",
            "no adapter, batched",
            tps,
            f"higher is better; {ad_cps:.1f} vs {cps:.1f} candidates/s; {env}",
        ),
        row(
            AREA,
            "adapter merged into the weights, batched",
            ad_tps,
            "tokens/s",
            "adapter unmerged (peft), batched",
            un_tps,
            f"higher is better; {ad_cps:.1f} vs {un_cps:.1f} candidates/s; {env}",
        ),
    ]
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r.as_dict())
