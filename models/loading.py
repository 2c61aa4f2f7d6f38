"""Find and load a model by the name a user gives: a catalog name (``smollm2-135m``, ``tiny``), a local
directory, or a hub name.

One place decides dtype (bf16 where the hardware runs it natively), device and how a LoRA adapter is
applied, so generation and training load weights the same way. Heavy imports stay inside functions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.config import DEFAULT_BASE, TINY_MODEL
from core.errors import PrefloopError
from models.catalog import resolve_named

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# peft 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing`` on every adapter load; the
# FutureWarning is about peft's code, not ours, and would print into `make run` and the app's log.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
DtypeName = Literal["auto", "bfloat16", "float32", "float16"]

# Merging the adapter into the weights removes the per-layer LoRA matmuls; bench_generation measures
# merged vs unmerged (PeftModel) on the tiny model and merged is faster, so it is the default.
MERGE_BY_DEFAULT = True


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def resolve_model(name: str) -> str:
    """A local directory holding ``config.json`` for ``name``; downloads a hub model only when online.

    Raises PrefloopError naming the offline default when the name is neither local nor loadable.
    """
    named = resolve_named(name)
    if named is not None:
        return str(named)
    if _looks_like_path(name):
        path = Path(name).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise PrefloopError(
                f"model {name!r}: {path} is not a model directory (no config.json); "
                f"give a directory saved with save_pretrained, a hub name, `{DEFAULT_BASE}` or `{TINY_MODEL}`"
            )
        return str(path)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # not in the local cache: try the hub unless offline mode forbids it
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        raise PrefloopError(
            f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so the hub "
            f"is unreachable; use an offline model (`{DEFAULT_BASE}`, `{TINY_MODEL}`) or a local directory"
        )
    try:
        return snapshot_download(name, etag_timeout=10)
    except Exception as exc:
        raise PrefloopError(
            f"model {name!r} cannot be downloaded: the Hugging Face hub is unreachable or has no such "
            f"model ({type(exc).__name__}); use an offline model "
            f"(`{DEFAULT_BASE}`, `{TINY_MODEL}`) or a local directory"
        ) from exc


def sampling_defaults(name: str) -> dict[str, float]:
    """``temperature`` and ``top_p`` from the model's generation_config.json (1.0 where it has none), as
    ``generate`` and vLLM read them."""
    import json

    path = Path(resolve_model(name)) / "generation_config.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {"temperature": float(saved.get("temperature", 1.0)), "top_p": float(saved.get("top_p", 1.0))}


@cache
def model_config(name: str):
    """The model's transformers config (its ``config.json``; no weights are read)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model(name))


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX (then bf16 matmuls beat fp32 on CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags.split() or "amx_bf16" in flags.split()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` torch threads (None: leave as is), then restore the old count."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: DtypeName = "auto", device: str | None = None) -> torch.dtype:
    """``auto``: bf16 on a GPU that supports it or a CPU with native bf16, else float32."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    device = device or pick_device()
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, left-padded (batched generation needs the prompt to end at the right)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def check_adapter(adapter_path: str) -> Path:
    """The adapter directory, or PrefloopError if it is not a saved peft adapter."""
    path = Path(adapter_path).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise PrefloopError(
            f"adapter {adapter_path!r}: no adapter_config.json there; point at a directory written by "
            "`prefloop train-round` (var/adapters/...) or peft's save_pretrained"
        )
    return path


def load_model(
    name: str,
    adapter_path: str | None = None,
    dtype: DtypeName = "auto",
    merge: bool = MERGE_BY_DEFAULT,
    trainable: bool = False,
    device: str | None = None,
) -> PreTrainedModel:
    """Base weights (+ a LoRA adapter) on ``device`` in eval mode.

    ``merge=True`` folds the adapter into the weights (faster generation); ``trainable=True`` keeps an
    unmerged PeftModel whose adapter can be trained further (then ``merge`` is ignored).
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    adapter = check_adapter(adapter_path) if adapter_path else None
    device = device or pick_device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, device)).to(device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        if merge and not trainable:
            model = model.merge_and_unload()
    if not trainable:
        model.eval()
    return model
