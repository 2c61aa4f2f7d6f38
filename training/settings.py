"""LLaMA-Factory-style knobs (``TrainConfig``) mapped to TRL's ``DPOConfig`` and peft's ``LoraConfig``.

The mapping is pure (plain dicts), so it is testable without importing torch; ``build_*`` wrap the dicts
in the real classes. TRL 1.16 defaults that fail or crawl on a CPU LoRA run are overridden here (see
NOTES.md): bf16 without a bf16-capable device, gradient checkpointing, and lr 1e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import TrainConfig
from core.errors import PrefloopError

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl import DPOConfig

# TRL 1.16's pairwise losses (``loss_type``); "sft" is added through ``pref_ftx``, not named here.
PREF_LOSSES = frozenset(
    [
        "sigmoid",
        "hinge",
        "ipo",
        "exo_pair",
        "nca_pair",
        "robust",
        "bco_pair",
        "sppo_hard",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sigmoid_norm",
    ]
)
# The losses TRL 1.16 generalises to another divergence than reverse KL (DPOConfig.f_divergence_type).
DIVERGENCE_LOSSES = frozenset(["sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop"])
# Modules LoRA must never wrap: vLLM serves LoRA on the linear projections only (NOTES: Qwen2).
OUTPUT_AND_EMBEDDING_MODULES = frozenset({"lm_head", "embed_tokens", "wte", "word_embeddings", "embed_out"})


@dataclass(frozen=True)
class Hardware:
    """Where a run executes; ``bf16`` is mixed precision (fp32 master weights, bf16 autocast)."""

    device: str  # "cuda" or "cpu"
    bf16: bool
    processes: int = 1


# Below this hidden size bf16 autocast does not pay on a CPU: for the 4 M tiny model (hidden 256) it was
# slower than fp32 even with AMX, for SmolLM2 (576) 1.8x faster (README "Training speed on a CPU").
BF16_CPU_MIN_HIDDEN = 512


def wants_bf16(precision: str, *, cuda: bool, supported: bool, hidden_size: int) -> bool:
    """Mixed precision or not: ``bf16``/``fp32`` as asked; ``auto`` bf16 on a bf16-capable GPU, and on a
    CPU with native bf16 (AMX or AVX512-BF16, ``supported``) for a model of hidden size >= 512.

    >>> wants_bf16("auto", cuda=False, supported=True, hidden_size=576)
    True
    >>> wants_bf16("auto", cuda=False, supported=True, hidden_size=256)
    False
    """
    if precision != "auto":
        return precision == "bf16"
    return supported and (cuda or hidden_size >= BF16_CPU_MIN_HIDDEN)


def detect_hardware(train: TrainConfig, hidden_size: int) -> Hardware:
    """CUDA when present, else CPU; bf16 per ``train.precision`` (``wants_bf16``) for a model of that
    hidden size. ``precision: bf16`` where the device has no native bf16 is refused: emulated, it was
    3.6x slower than fp32 on a CPU without avx512_bf16."""
    import torch

    from models.loading import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    supported = torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16()
    if train.precision == "bf16" and not supported:
        raise PrefloopError(
            "train.precision: bf16 is not supported on this "
            + ("GPU" if cuda else "CPU (no avx512_bf16/amx)")
            + "; use precision: auto or fp32"
        )
    bf16 = wants_bf16(train.precision, cuda=cuda, supported=supported, hidden_size=hidden_size)
    return Hardware(device="cuda" if cuda else "cpu", bf16=bf16)


def loss_terms(train: TrainConfig) -> tuple[list[str], list[float]]:
    """``pref_loss`` (one name or "a,b") plus an ``sft`` term weighted ``pref_ftx`` when it is > 0.

    LLaMA-Factory's ``pref_ftx`` adds ``ftx * NLL(chosen)`` to the preference loss; TRL 1.x expresses the
    same as ``loss_type=[..., "sft"]`` with ``loss_weights`` (``rpo_alpha`` is gone).
    """
    names = [name.strip() for name in train.pref_loss.split(",") if name.strip()]
    if not names:
        raise PrefloopError("train.pref_loss: empty; use e.g. sigmoid, ipo, hinge or robust")
    unknown = [name for name in names if name not in PREF_LOSSES]
    if unknown:
        hint = "add an SFT term with train.pref_ftx" if "sft" in unknown else f"one of {sorted(PREF_LOSSES)}"
        raise PrefloopError(f"train.pref_loss: unknown loss {', '.join(unknown)}; {hint}")
    fixed = [name for name in names if name not in DIVERGENCE_LOSSES]
    if train.pref_divergence != "reverse_kl" and fixed:
        raise PrefloopError(
            f"train.pref_divergence={train.pref_divergence}: loss {', '.join(fixed)} is defined for "
            f"reverse KL only; use train.pref_divergence=reverse_kl, or one of {sorted(DIVERGENCE_LOSSES)}"
        )
    weights = [1.0] * len(names)
    if train.pref_ftx > 0:
        names.append("sft")
        weights.append(train.pref_ftx)
    return names, weights


def lora_targets(lora_target: str, linear_module_names: list[str]) -> list[str]:
    """Module names LoRA wraps: "all" = every linear layer but the output/embedding ones, else the list.

    ``linear_module_names`` are the leaf names of the model's ``nn.Linear`` modules (e.g. "q_proj").
    """
    available = sorted(set(linear_module_names))
    if lora_target.strip() == "all":
        targets = [name for name in available if name not in OUTPUT_AND_EMBEDDING_MODULES]
    else:
        targets = [name.strip() for name in lora_target.split(",") if name.strip()]
        missing = [
            name for name in targets if name not in available and name not in OUTPUT_AND_EMBEDDING_MODULES
        ]
        if missing:
            raise PrefloopError(
                f"train.lora_target: no linear module named {', '.join(missing)} in this model; "
                f"choose from {', '.join(available)} or 'all'"
            )
    if not targets:
        raise PrefloopError("train.lora_target: no module to adapt; use 'all'")
    return targets


def adapted_layers(lora_layers: int, num_layers: int) -> list[int] | None:
    """Decoder layers LoRA wraps: the top ``lora_layers`` of ``num_layers`` (None: all of them).

    >>> adapted_layers(6, 30)
    [24, 25, 26, 27, 28, 29]
    """
    if lora_layers == 0 or lora_layers >= num_layers:
        return None
    return list(range(num_layers - lora_layers, num_layers))


def lora_settings(train: TrainConfig, targets: list[str], num_layers: int) -> dict[str, Any]:
    """The ``LoraConfig`` fields, as a mapping ``models.adapters.validate_lora_settings`` also checks.

    ``layers_to_transform`` (peft) needs ``target_modules`` as a list of names, which ``targets`` is.
    """
    return {
        "r": train.lora_rank,
        "lora_alpha": train.lora_alpha,
        "lora_dropout": train.lora_dropout,
        "target_modules": targets,
        "bias": "none",
        "use_dora": False,
        "modules_to_save": None,
        "layers_to_transform": adapted_layers(train.lora_layers, num_layers),
        "task_type": "CAUSAL_LM",
    }


def round_epochs(epochs: float, min_steps: int, n_pairs: int, pairs_per_step: int) -> float:
    """``epochs``, or the fewest whole epochs over ``n_pairs`` that take ``min_steps`` optimizer steps."""
    steps_per_epoch = max(1, math.ceil(n_pairs / pairs_per_step))
    return max(epochs, float(math.ceil(min_steps / steps_per_epoch)))


def checkpoint_steps(max_steps: int, checkpoints: int) -> list[int]:
    """The optimizer steps after which the adapter is kept: ``checkpoints`` evenly spaced, the last at
    ``max_steps``; fewer when the run is shorter than that."""
    return sorted({max(1, round(max_steps * k / checkpoints)) for k in range(1, checkpoints + 1)})


def dpo_settings(
    train: TrainConfig, hardware: Hardware, *, output_dir: str, has_validation: bool, n_train: int
) -> dict[str, Any]:
    """The ``DPOConfig`` fields for one run of ``n_train`` pairs (TRL defaults that break a CPU LoRA run
    replaced)."""
    loss_type, loss_weights = loss_terms(train)
    evaluate = has_validation and train.eval_steps != 0
    per_step = train.per_device_train_batch_size * train.gradient_accumulation_steps * train.num_processes
    return {
        "output_dir": output_dir,
        "learning_rate": train.learning_rate,
        "num_train_epochs": round_epochs(train.num_train_epochs, train.min_steps, n_train, per_step),
        "per_device_train_batch_size": train.per_device_train_batch_size,
        "per_device_eval_batch_size": train.per_device_train_batch_size * 2,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "max_length": train.cutoff_len,
        "beta": train.pref_beta,
        "loss_type": loss_type,
        "loss_weights": loss_weights,
        "f_divergence_type": train.pref_divergence,
        "lr_scheduler_type": train.lr_scheduler_type,
        "warmup_steps": train.warmup_steps,
        "seed": train.seed,
        "data_seed": train.seed,
        "logging_steps": train.logging_steps,
        "eval_strategy": ("steps" if train.eval_steps else "epoch") if evaluate else "no",
        "eval_steps": train.eval_steps or None,
        "save_strategy": "no",  # the adapter is saved once, atomically, by training.registry
        "report_to": [],
        "bf16": hardware.bf16,
        "use_cpu": hardware.device == "cpu",
        "activation_checkpointing": False,  # TRL defaults gradient_checkpointing=True: slower, no use here
        "precompute_ref_log_probs": train.precompute_ref_log_probs,
        "precompute_ref_batch_size": train.per_device_train_batch_size * 4,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }


def build_dpo_config(settings: dict[str, Any]) -> DPOConfig:
    from trl import DPOConfig

    return DPOConfig(**settings)


def build_lora_config(settings: dict[str, Any]) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(**settings)
