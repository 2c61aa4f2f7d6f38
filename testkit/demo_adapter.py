"""A LoRA adapter with random weights, for tests and benchmarks of adapter serving.

Training one takes a data set and minutes; checking that a backend applies an adapter (and applies it
the same way as peft does) needs only an adapter whose effect is visible. peft's
``init_lora_weights=False`` draws both LoRA matrices at random, so greedy output changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Qwen2/Llama-style decoder: the 7 linear projections vLLM serves LoRA on.
LINEAR_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def save_random_adapter(
    base_dir: str | Path, out_dir: str | Path, rank: int = 8, seed: int = 0, **lora_settings: Any
) -> Path:
    """Write a random-weight peft LoRA for the model in ``base_dir`` to ``out_dir``.

    ``lora_settings`` override LoraConfig fields (e.g. ``use_dora=True`` to make one vLLM must refuse).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    settings = {
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": list(LINEAR_PROJECTIONS),
        "init_lora_weights": False,
        "task_type": "CAUSAL_LM",
        **lora_settings,
    }
    peft_model = get_peft_model(model, LoraConfig(**settings))
    peft_model.save_pretrained(str(out_dir))
    return Path(out_dir)
