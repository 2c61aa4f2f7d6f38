"""Transformers backend speed: one round's candidates (114 seed ideas x 5) with the tiny model.

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


def _rate(backend, prompts, policy: Policy, sampling: SamplingParams) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, candidates/s, tokens/s) of one ``generate`` call over ``prompts``.

    CPU seconds are reported beside wall time: on a shared machine the wall clock mostly measures the
    other processes, while CPU time says what the work costs on idle cores.
    """
    started, cpu = time.perf_counter(), time.process_time()
    out = backend.generate(prompts, policy, sampling)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    cands = sum(len(c) for c in out)
    return seconds, cpu_seconds, cands / seconds, sum(g.n_tokens for c in out for g in c) / seconds


def run(quick: bool = False) -> list[BenchRow]:
    import torch

    from core.config import TINY_MODEL, GenerationConfig
    from generation.backends.transformers_backend import TransformersBackend
    from generation.tiny_model.data import seed_idea_messages
    from models.catalog import TINY_DIR
    from models.loading import pick_dtype
    from testkit.demo_adapter import save_random_adapter

    batch = GenerationConfig().batch_size
    prompts = seed_idea_messages(24 if quick else None)
    single_prompts = prompts[: 12 if quick else 40]
    sampling = SamplingParams(n=5, seed=0)
    base = Policy("base", TINY_MODEL)
    threads = GenerationConfig().cpu_threads or torch.get_num_threads()
    env = f"{machine()}, generation threads {threads}, {pick_dtype()}".replace("torch.", "")
    batched = TransformersBackend(batch_size=batch)
    batched.generate(prompts[:2], base, sampling)  # load + warm up outside the timings
    secs, cpu_secs, cps, tps = _rate(batched, prompts, base, sampling)
    one_by_one = [_rate(batched, [p], base, sampling) for p in single_prompts]
    single_cps = len(single_prompts) * sampling.n / sum(r[0] for r in one_by_one)
    single_cpu = sum(r[1] for r in one_by_one) / len(single_prompts)
    batched_cpu = cpu_secs / len(prompts)
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
            "batched, CPU seconds per prompt (5 candidates)",
            batched_cpu,
            "CPU s",
            "one prompt at a time",
            single_cpu,
            "lower is better (ratio < 1: batched costs less CPU)",
        ),
        row(
            AREA,
            "570 candidates (114 x 5), batched, wall",
            570 / cps,
            "s",
            "target",
            TARGET_SECONDS,
            f"lower is better; ratio <= 1 meets the target; measured {secs:.1f} s for {len(prompts)} prompts",
        ),
        row(
            AREA,
            "570 candidates (114 x 5), batched, CPU time",
            batched_cpu * 114,
            "CPU s",
            "target",
            TARGET_SECONDS,
            "lower is better; the wall time on idle cores is at most this (one thread)",
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        adapter = str(save_random_adapter(TINY_DIR, Path(tmp) / "lora", rank=8, lora_alpha=1))
        tuned = Policy("round-1", TINY_MODEL, adapter, lora_id=1)
        unmerged = TransformersBackend(batch_size=batch, merge=False)
        unmerged.generate(prompts[:2], tuned, sampling)
        _, _, un_cps, un_tps = _rate(unmerged, prompts, tuned, sampling)
        unmerged.close()
        batched.generate(prompts[:2], tuned, sampling)
        _, _, ad_cps, ad_tps = _rate(batched, prompts, tuned, sampling)
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
