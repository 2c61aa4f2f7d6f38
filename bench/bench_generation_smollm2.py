"""The default base model (SmolLM2-135M-Instruct): one round's 570 candidates (114 seed ideas x 5).

All in one run, at the default sampling (the model's temperature 0.7 / top_p 0.9, stop at newline,
max 32 new tokens), with the prompts `prefloop demo` stores (the youtube-title template and its system
message):
- transformers batched (``generation.batch_size`` sequences per call, the default 1 thread, float32) vs
  one prompt at a time (its 5 samples per call);
- prefloop's vLLM CPU server (``.venv-vllm``, float32) vs transformers batched, all prompts in one call;
- float32 vs bfloat16 and 2 threads vs 1 for transformers (this decides ``model.dtype: auto`` and
  ``generation.cpu_threads`` on a CPU without native bf16);
- what `make run` waits for before the app starts: model load + the first 6 prompts x 5.
Quick mode: 12 ideas (one at a time 4, precision and threads 8), same rows.
"""

from __future__ import annotations

import time

from bench.common import BenchRow, machine, row
from generation.backends.base import Generated, Policy, SamplingParams
from models.loading import torch_threads

AREA = "generation-smollm2"


def _timed(
    backend, prompts, policy: Policy, sampling: SamplingParams, group: int = 0
) -> tuple[float, int, int]:
    """(seconds, candidates, generated tokens): one ``generate`` call, or calls of ``group`` prompts each."""
    group = group or len(prompts)
    out: list[list[Generated]] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), group):
        out += backend.generate(prompts[start : start + group], policy, sampling)
    return time.perf_counter() - started, sum(len(c) for c in out), sum(g.n_tokens for c in out for g in c)


def _timed_generate(hf, prompts, policy: Policy, sampling: SamplingParams) -> tuple[float, int, int]:
    """The same groups and seeds through ``model.generate`` itself (every row computed until the longest
    ends, top-p by the warper): the baseline of ``sample_shrinking``, which must give the same tokens."""
    import torch

    from generation.backends.transformers_backend import (
        decode_completion,
        newline_token_ids,
        sampling_kwargs,
        shared_prompt_cache,
        stop_token_ids,
    )

    model, tok = hf._model_for(policy)
    stop_ids = stop_token_ids(model, tok)
    ends = stop_ids + newline_token_ids(tok, sampling.stop)
    per_group = max(1, hf.batch_size // sampling.n)
    out: list[Generated] = []
    started = time.perf_counter()
    for index, start in enumerate(range(0, len(prompts), per_group)):
        texts = [
            tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
            for m in prompts[start : start + per_group]
        ]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(sampling.seed + index)
        with torch.inference_mode(), torch_threads(hf.cpu_threads):
            seqs = model.generate(
                **shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], sampling.n),
                **sampling_kwargs(sampling),
                max_new_tokens=sampling.max_new_tokens,
                eos_token_id=ends,
                pad_token_id=tok.pad_token_id,
            )
        new = seqs[:, batch["input_ids"].shape[1] :].tolist()
        out += [decode_completion(tok, ids, stop_ids, sampling.stop) for ids in new]
    return time.perf_counter() - started, len(out), sum(g.n_tokens for g in out)


def _tps(result: tuple[float, int, int]) -> float:
    return result[2] / result[0]


def run(quick: bool = False) -> list[BenchRow]:
    from rich.console import Console

    from core.config import DEFAULT_BASE, load_config
    from core.net import free_port
    from generation.api import sampling_from
    from generation.backends.transformers_backend import TransformersBackend
    from generation.backends.vllm_server import VllmServerBackend
    from generation.serve import ServerSpec, resolve_python, start_server
    from generation.tiny_model.data import seed_ideas
    from models.loading import resolve_model
    from prefloop.commands.annotate import DEMO_FIRST_PROMPTS
    from storage.models import prompt_messages
    from storage.parsing import make_prompt

    config = load_config(overrides=[f"model.base={DEFAULT_BASE}"])
    n_prompts = 12 if quick else 114
    prompts = [prompt_messages(make_prompt(idea, 1, "youtube-title")) for idea in seed_ideas(n_prompts)]
    sampling = sampling_from(config, n=5)
    base = Policy("base", DEFAULT_BASE)
    batch = config.generation.batch_size
    env = f"{machine()}; sampling T {sampling.temperature} top_p {sampling.top_p}"

    started = time.perf_counter()
    hf = TransformersBackend(batch_size=batch, dtype="float32", cpu_threads=1)
    first = _timed(hf, prompts[:DEMO_FIRST_PROMPTS], base, sampling)
    first_s = time.perf_counter() - started
    batched = _timed(hf, prompts, base, sampling, max(1, batch // sampling.n))
    singles = prompts[: 4 if quick else 20]
    single = _timed(hf, singles, base, sampling, group=1)
    subset = prompts[: 8 if quick else 24]
    one = _timed(hf, subset, base, sampling)
    plain = _timed_generate(hf, subset, base, sampling)
    hf.close()
    threads2 = TransformersBackend(batch_size=batch, dtype="float32", cpu_threads=2)
    threads2.generate(subset[:1], base, sampling)
    two = _timed(threads2, subset, base, sampling)
    threads2.close()
    bf16_backend = TransformersBackend(batch_size=batch, dtype="bfloat16", cpu_threads=1)
    bf16_backend.generate(subset[:1], base, sampling)
    bf16 = _timed(bf16_backend, subset, base, sampling)
    bf16_backend.close()

    spec = ServerSpec(
        model=resolve_model(DEFAULT_BASE),
        served_name=DEFAULT_BASE,
        python=resolve_python(config.generation.vllm_python),
        port=free_port(),
        max_lora_rank=8,
        dtype="float32",
    )
    started = time.perf_counter()
    server = start_server(spec, config.var_dir / "vllm" / "bench-smollm2-server.log", Console(stderr=True))
    start_s = time.perf_counter() - started
    backend = VllmServerBackend(server.url, max_lora_rank=8, resolve_model=resolve_model)
    try:
        backend.generate(prompts[:2], base, sampling)  # the first request pays lazy initialisation
        vllm = _timed(backend, prompts, base, sampling)
    finally:
        backend.close()
        server.stop()

    work = f"{n_prompts} prompts x 5"
    return [
        row(
            AREA,
            f"{work}: transformers batched ({batch} sequences/call), fp32, 1 thread",
            _tps(batched),
            "tokens/s",
            f"one prompt at a time ({len(singles)} prompts)",
            _tps(single),
            f"higher is better; {batched[0]:.0f} s for {batched[1]} candidates; {env}",
        ),
        row(
            AREA,
            f"{work}: vLLM CPU server, fp32, one call",
            _tps(vllm),
            "tokens/s",
            "transformers batched",
            _tps(batched),
            f"higher is better; vLLM {vllm[0]:.0f} s for {vllm[1]} candidates; {env}",
        ),
        row(
            AREA,
            "570 candidates (114 x 5): transformers batched, wall",
            570 * batched[0] / batched[1],
            "s",
            "vLLM CPU server",
            570 * vllm[0] / vllm[1],
            "lower is better; from the measured seconds per candidate",
        ),
        row(
            AREA,
            f"{len(subset)} prompts x 5: ended rows leave the batch + top-p from the head, fp32, 1 thread",
            _tps(one),
            "tokens/s",
            "model.generate (every row until the longest ends)",
            _tps(plain),
            f"higher is better; same tokens: {one[2]} vs {plain[2]}; {one[0]:.1f} vs {plain[0]:.1f} s",
        ),
        row(
            AREA,
            f"{len(subset)} prompts x 5: transformers bf16, 1 thread",
            _tps(bf16),
            "tokens/s",
            "float32",
            _tps(one),
            "higher is better; model.dtype auto takes bf16 on a CPU with native bf16 (AMX / AVX512-BF16)",
        ),
        row(
            AREA,
            f"{len(subset)} prompts x 5: transformers fp32, 2 threads",
            _tps(two),
            "tokens/s",
            "1 thread",
            _tps(one),
            "higher is better; generation.cpu_threads defaults to 1 (shared cores)",
        ),
        row(
            AREA,
            f"`make run` before the app: load + first {DEMO_FIRST_PROMPTS} prompts x 5",
            first_s,
            "s",
            note=f"lower is better; {first[2]} tokens; {env}",
        ),
        row(AREA, "vLLM server start until /health (SmolLM2, fp32)", start_s, "s", note="lower is better"),
    ]


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
