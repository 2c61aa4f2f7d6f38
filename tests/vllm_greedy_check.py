"""Run by tests/test_real_model.py with vLLM's own interpreter: greedy output of the in-process ``vllm``
backend for a base model and one LoRA adapter of it, in float32.

Usage: ``.venv-vllm/bin/python tests/vllm_greedy_check.py BASE_DIR ADAPTER PROMPTS.json MAX_NEW_TOKENS``.
Prints one JSON object ``{"base": [[text, finish_reason, n_tokens]], "adapter": [...]}``, one per prompt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from generation.backends.base import Policy, SamplingParams
from generation.backends.vllm_inprocess import VllmInProcessBackend


def main(base: str, adapter: str, prompts_file: str, max_new_tokens: str) -> dict:
    prompts = json.loads(Path(prompts_file).read_text(encoding="utf-8"))
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=int(max_new_tokens), stop=("\n",))
    backend = VllmInProcessBackend(max_lora_rank=8, dtype="float32", engine_args={"max_model_len": 512})
    try:
        out = {}
        for name, policy in (("base", Policy("base", base)), ("adapter", Policy("lora", base, adapter, 1))):
            out[name] = [
                [g.text, g.finish_reason, g.n_tokens]
                for gs in backend.generate(prompts, policy, greedy)
                for g in gs
            ]
        return out
    finally:
        backend.close()


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running this
    print(json.dumps(main(*sys.argv[1:5])))
