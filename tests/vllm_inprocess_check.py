"""Run by tests/test_vllm.py with vLLM's own interpreter: the in-process ``vllm`` backend, for real.

Usage: ``.venv-vllm/bin/python tests/vllm_inprocess_check.py BASE ADAPTER FOREIGN_ADAPTER PROMPTS.json``.
Prints one JSON object: greedy texts for base and adapter, the error for an adapter built for another
model (refused before vLLM sees it), and whether the engine still generates afterwards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.errors import PrefloopError
from generation.backends.base import Policy, SamplingParams
from generation.backends.vllm_inprocess import VllmInProcessBackend


def main(base: str, adapter: str, foreign: str, prompts_file: str) -> dict:
    prompts = json.loads(Path(prompts_file).read_text(encoding="utf-8"))
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=32)
    backend = VllmInProcessBackend(max_lora_rank=8, dtype="float32")
    try:
        texts = {}
        texts["base"] = [g[0].text for g in backend.generate(prompts, Policy("base", base), greedy)]
        texts["adapter"] = [
            g[0].text for g in backend.generate(prompts, Policy("lora", base, adapter, 1), greedy)
        ]
        try:
            backend.generate(prompts, Policy("foreign", base, foreign, 2), greedy)
            texts["foreign_error"] = None
        except PrefloopError as exc:
            texts["foreign_error"] = str(exc)
        after = backend.generate(prompts, Policy("lora", base, adapter, 1), greedy)
        texts["adapter_after_refusal"] = [g[0].text for g in after]
        return texts
    finally:
        backend.close()


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running this
    print(json.dumps(main(*sys.argv[1:5])))
