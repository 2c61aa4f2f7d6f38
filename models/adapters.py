"""Can vLLM serve this LoRA adapter? Answered from its config alone, before any work starts.

vLLM refuses some peft features outright (DoRA, ``modules_to_save``, bias terms, ranks above the server's
``--max-lora-rank``) and silently ignores others (LoRA on ``embed_tokens``/``lm_head``, trained token
rows). Offline, an adapter it refuses kills the engine; on a server it fails the request after the
round has started. So training checks its LoraConfig with :func:`validate_lora_settings` before it
trains, and generation checks the saved adapter with :func:`validate_servable_adapter` before it loads.
The rules mirror vLLM's ``PEFTHelper.validate_legal`` (vllm/lora/peft_helper.py).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.errors import PrefloopError

# The only values vLLM accepts for --max-lora-rank (vllm/config/lora.py, MaxLoRARanks).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Modules vLLM does not apply LoRA weights to for decoder-only chat models such as Qwen2.
UNSERVABLE_TARGETS = ("embed_tokens", "lm_head")
# init_lora_weights strings that only set the starting weights (anything else rewrites the base model).
PLAIN_LORA_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")


def _field(config: Mapping[str, Any] | object, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _as_names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, Iterable) else [str(value)]


def _targets_unservable(target_modules: Any) -> list[str]:
    """Unservable modules named by ``target_modules`` (a list of names, or one regex as peft allows)."""
    if isinstance(target_modules, str):
        if target_modules == "all-linear":  # peft resolves this without lm_head
            return []
        return [
            m
            for m in UNSERVABLE_TARGETS
            if re.fullmatch(target_modules, m) or re.fullmatch(target_modules, f"model.{m}")
        ]
    return [m for m in _as_names(target_modules) if m.split(".")[-1] in UNSERVABLE_TARGETS]


def check_max_lora_rank(rank: int) -> int:
    """``rank`` if vLLM accepts it as ``--max-lora-rank``, else PrefloopError listing the allowed values."""
    if rank not in VLLM_MAX_LORA_RANKS:
        raise PrefloopError(
            f"generation.vllm_max_lora_rank={rank}: vLLM accepts only "
            f"{', '.join(map(str, VLLM_MAX_LORA_RANKS))}"
        )
    return rank


def lora_setting_problems(config: Mapping[str, Any] | object, max_rank: int) -> list[str]:
    """Each problem as ``field=value: why``; empty when vLLM can serve an adapter with these settings.

    ``config`` is a peft ``LoraConfig``, or any mapping with its field names (an adapter_config.json).
    """
    problems: list[str] = []
    peft_type = _field(config, "peft_type", "LORA")
    peft_type = getattr(peft_type, "value", peft_type)
    if peft_type is not None and str(peft_type).upper() != "LORA":
        problems.append(f"peft_type={peft_type}: vLLM serves only LoRA adapters")
    rank = _field(config, "r", 8)
    rank_pattern = dict(_field(config, "rank_pattern", None) or {})
    top_rank = max([rank, *rank_pattern.values()])
    if top_rank > max_rank:
        where = "r" if top_rank == rank else "rank_pattern"
        problems.append(
            f"{where}={top_rank}: above the server's max LoRA rank {max_rank} "
            "(train with a smaller rank, or raise generation.vllm_max_lora_rank)"
        )
    if _field(config, "use_dora", False):
        problems.append("use_dora=true: vLLM does not support DoRA (train plain LoRA)")
    modules_to_save = _as_names(_field(config, "modules_to_save", None))
    if modules_to_save:
        problems.append(
            f"modules_to_save={modules_to_save}: vLLM cannot serve fully trained modules; "
            "train LoRA on the linear projections only"
        )
    bias = _field(config, "bias", "none")
    if bias != "none":
        problems.append(f'bias="{bias}": vLLM serves only adapters with bias="none"')
    if _field(config, "lora_bias", False):
        problems.append("lora_bias=true: vLLM does not support LoRA bias terms")
    unservable = _targets_unservable(_field(config, "target_modules", None))
    if unservable:
        problems.append(
            f"target_modules includes {unservable}: vLLM does not apply LoRA to embeddings or the "
            "output layer; target the attention/MLP projections"
        )
    if _field(config, "trainable_token_indices", None):
        problems.append("trainable_token_indices is set: vLLM ignores trained token embeddings")
    init = _field(config, "init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in PLAIN_LORA_INITS:
        problems.append(
            f"init_lora_weights={init}: this init rewrites the base weights, which vLLM does not do; "
            "convert the adapter to plain LoRA first"
        )
    for name in ("layer_replication", "alora_invocation_tokens", "use_bdlora", "use_qalora"):
        if _field(config, name, None):
            problems.append(f"{name} is set: vLLM does not support it")
    return problems


def validate_lora_settings(
    config: Mapping[str, Any] | object, max_rank: int, source: str = "LoRA config"
) -> None:
    """Raise PrefloopError naming the first offending field if vLLM could not serve the result."""
    problems = lora_setting_problems(config, max_rank)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise PrefloopError(f"{source}: {problems[0]}{more}")


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """The adapter's adapter_config.json as a dict; PrefloopError if it is missing or not JSON."""
    file = Path(path).expanduser() / "adapter_config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PrefloopError(
            f"adapter {path}: no adapter_config.json there; point at a directory saved by peft "
            "(`prefloop train-round` writes them under var/adapters/)"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise PrefloopError(f"{file}: cannot read it as JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise PrefloopError(f"{file}: expected a JSON object of peft settings")
    return config


def safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors header (8-byte length, then JSON), without loading weights."""
    with open(file, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def model_weight_shapes(model_dir: Path) -> dict[str, list[int]] | None:
    """Shapes of a saved model's weights (single or sharded safetensors); None if it has no safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return {k: v for shard in shards for k, v in safetensors_shapes(model_dir / shard).items()}
    single = model_dir / "model.safetensors"
    return safetensors_shapes(single) if single.is_file() else None


def adapter_fit_problems(adapter_dir: Path, base_dir: Path) -> list[str]:
    """Where the adapter's LoRA matrices do not fit the base model's layers.

    vLLM does not check this: it copies a smaller adapter's matrices into its buffers and serves
    wrong text without an error. peft would refuse it, so an adapter trained on another base shows here.
    """
    weights = adapter_dir / "adapter_model.safetensors"
    base_shapes = model_weight_shapes(base_dir)
    if base_shapes is None or not weights.is_file():
        return []
    problems = []
    for name, shape in sorted(safetensors_shapes(weights).items()):
        kind = "A" if ".lora_A." in name else "B" if ".lora_B." in name else None
        if kind is None:
            continue
        module = name.removeprefix("base_model.model.").split(f".lora_{kind}.")[0]
        base = base_shapes.get(f"{module}.weight")
        if base is None:
            problems.append(f"{module}: not a layer of the base model")
        elif (kind == "A" and shape[1] != base[1]) or (kind == "B" and shape[0] != base[0]):
            problems.append(f"{module}: lora_{kind} has shape {shape}, the base layer {base}")
    return problems


def validate_servable_adapter(
    path: str | Path, max_rank: int, base_dir: str | Path | None = None
) -> dict[str, Any]:
    """Check a saved adapter directory before vLLM sees it; return its config.

    Raises PrefloopError naming ``<path>/adapter_config.json`` and the field vLLM would reject, or, given
    the base model's directory, the first layer the adapter does not fit.
    """
    config = read_adapter_config(path)
    directory = Path(path).expanduser()
    if not any((directory / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise PrefloopError(
            f"adapter {path}: no adapter_model.safetensors (or .bin) next to adapter_config.json; "
            "the adapter was not saved completely"
        )
    validate_lora_settings(config, max_rank, source=f"{directory / 'adapter_config.json'}")
    if base_dir is not None and Path(base_dir).is_dir():
        misfits = adapter_fit_problems(directory, Path(base_dir))
        if misfits:
            raise PrefloopError(
                f"adapter {path} does not fit base model {base_dir} ({len(misfits)} mismatches, first: "
                f"{misfits[0]}); was it trained on another base model? adapter_config.json says "
                f"base_model_name_or_path={config.get('base_model_name_or_path')!r}"
            )
    return config
