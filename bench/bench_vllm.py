"""vLLM CPU server vs the transformers batched backend: one round's candidates, base and with an adapter.

Workload: the seed's 114 video ideas x 5 titles (quick: 24 ideas) with the tiny model at the default
sampling (temperature 1, top_p 1, max 48 new tokens). Both backends run in this process's run, on the same
machine, one after the other, in the same dtype (bf16 where the CPU has native bf16, as
``models.loading.pick_dtype`` decides): transformers batched (``TransformersBackend``,
``generation.batch_size`` sequences per batch, adapter merged), then prefloop's vLLM server
(``.venv-vllm``, built by ``make vllm-env``) through the ``vllm-server`` backend, every prompt of the
round in one call, and again in the groups ``prefloop generate`` sends.

The adapter is a random LoRA r8 on the 7 projections with a small scale (lora_alpha 1), so its titles
stay about as long as the base model's and tokens/s compare like for like.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

from bench.common import BenchRow, machine, row
from core.paths import REPO_ROOT
from generation.backends.base import Generated, Policy, SamplingParams

AREA = "vllm"
IDEAS_CSV = REPO_ROOT / "data" / "youtube-titles" / "ideas.csv"


def _prompts(count: int) -> list[list[dict[str, str]]]:
    from generation.tiny_model.data import render_seed_prompt

    with open(IDEAS_CSV, encoding="utf-8") as f:
        ideas = [r["Idea"] for r in csv.DictReader(f)][:count]
    return [[{"role": "user", "content": render_seed_prompt(idea)}] for idea in ideas]


def _timed(
    backend, prompts, policy: Policy, sampling: SamplingParams, group: int = 0
) -> tuple[float, int, int]:
    """(seconds, candidates, generated tokens) over all prompts: one ``generate`` call, or calls of
    ``group`` prompts each (what ``generation.api`` does with ``generation.batch_size // n``)."""
    group = group or len(prompts)
    out: list[list[Generated]] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), group):
        out += backend.generate(prompts[start : start + group], policy, sampling)
    seconds = time.perf_counter() - started
    return seconds, sum(len(c) for c in out), sum(g.n_tokens for c in out for g in c)


def _pair_rows(
    label: str, ours: tuple[float, int, int], base: tuple[float, int, int], n_prompts: int
) -> list[BenchRow]:
    (s, cands, toks), (bs, bcands, btoks) = ours, base
    work = f"{n_prompts} prompts x 5, {label}"
    note = f"higher is better; vLLM {toks / cands:.1f} tokens/candidate, transformers {btoks / bcands:.1f}"
    return [
        row(
            AREA,
            f"{work}: vLLM CPU server",
            cands / s,
            "candidates/s",
            "transformers batched",
            bcands / bs,
            note,
        ),
        row(AREA, f"{work}: vLLM CPU server", toks / s, "tokens/s", "transformers batched", btoks / bs, note),
    ]


def run(quick: bool = False) -> list[BenchRow]:
    from rich.console import Console

    from core.config import TINY_MODEL, load_config
    from core.net import free_port
    from generation.backends.transformers_backend import TransformersBackend
    from generation.backends.vllm_server import VllmServerBackend
    from generation.serve import ServerSpec, resolve_python, start_server
    from models.loading import pick_dtype, resolve_model
    from testkit.demo_adapter import save_random_adapter

    config = load_config()
    dtype = str(pick_dtype(config.model.dtype, "cpu")).removeprefix("torch.")  # same for both backends
    n_prompts = 24 if quick else 114
    prompts = _prompts(n_prompts)
    sampling = SamplingParams(n=5, temperature=1.0, top_p=1.0, max_new_tokens=48, seed=0)
    model_dir = resolve_model(TINY_MODEL)
    base = Policy("base", TINY_MODEL)
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        adapter = Policy(
            "bench-lora",
            TINY_MODEL,
            str(save_random_adapter(model_dir, Path(tmp) / "lora", lora_alpha=1)),
            1,
        )

        spec = ServerSpec(
            model=model_dir,
            served_name=TINY_MODEL,
            python=resolve_python(config.generation.vllm_python),
            port=free_port(),
            max_lora_rank=8,
            dtype=dtype,
        )
        started = time.perf_counter()
        server = start_server(spec, config.var_dir / "vllm" / "bench-server.log", Console(stderr=True))
        start_s = time.perf_counter() - started
        backend = VllmServerBackend(server.url, max_lora_rank=8, resolve_model=resolve_model)
        hf = TransformersBackend(batch_size=config.generation.batch_size, dtype=dtype)
        try:
            # Alternate the backends (the idle server takes no CPU) so a change in machine load
            # between measurements shows in both rather than in one.
            hf.generate(prompts[:2], base, sampling)  # load + warm up outside the timing
            hf_base = _timed(hf, prompts, base, sampling)
            backend.generate(prompts[:2], base, sampling)  # first request pays lazy initialisation
            vllm_base = _timed(backend, prompts, base, sampling)
            group = max(1, config.generation.batch_size // sampling.n)
            vllm_grouped = _timed(backend, prompts, base, sampling, group)
            hf.generate(prompts[:2], adapter, sampling)
            hf_adapter = _timed(hf, prompts, adapter, sampling)
            started = time.perf_counter()
            backend.generate(prompts[:1], adapter, SamplingParams(n=1, max_new_tokens=1))
            load_s = time.perf_counter() - started
            vllm_adapter = _timed(backend, prompts, adapter, sampling)
        finally:
            hf.close()
            backend.close()
            server.stop()

    where = f"{machine()}; {dtype}"
    rows = _pair_rows("base model", vllm_base, hf_base, n_prompts) + _pair_rows(
        "LoRA r8", vllm_adapter, hf_adapter, n_prompts
    )
    rows.append(
        row(
            AREA,
            "vLLM CPU server: tokens/s with LoRA r8",
            vllm_adapter[2] / vllm_adapter[0],
            "tokens/s",
            "same server, base model",
            vllm_base[2] / vllm_base[0],
            "ratio < 1 is the LoRA overhead (punica CPU kernels)",
        )
    )
    rows.append(
        row(
            AREA,
            f"vLLM CPU server, base: {group} prompts per call (prefloop generate's groups)",
            vllm_grouped[1] / vllm_grouped[0],
            "candidates/s",
            "all prompts in one call",
            vllm_base[1] / vllm_base[0],
            "higher is better; groups come from generation.batch_size // n",
        )
    )
    rows.append(row(AREA, "vLLM server start until /health", start_s, "s", note=f"{where}; lower is better"))
    rows.append(
        row(AREA, "runtime adapter load + 1-token request", load_s * 1000, "ms", note="lower is better")
    )
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
