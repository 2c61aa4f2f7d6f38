"""Backend selection. Each implementation module exposes ``make_backend(config) -> Backend``.

``auto`` prefers vLLM when it can run here (a configured ``generation.vllm_url``, or ``vllm`` importable
in this interpreter) and falls back to transformers. vLLM modules are imported lazily: they are heavy and
usually absent from the training environment.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from core.errors import PrefloopError
from generation.backends.base import Backend, Generated, Policy, SamplingParams

if TYPE_CHECKING:
    from core.config import Config

BACKEND_MODULES = {
    "transformers": "generation.backends.transformers_backend",
    "vllm": "generation.backends.vllm_inprocess",
    "vllm-server": "generation.backends.vllm_server",
}

__all__ = ["Backend", "Generated", "Policy", "SamplingParams", "get_backend", "resolve_backend_name"]


def resolve_backend_name(config: Config, name: str | None = "auto") -> str:
    """The concrete backend ``auto`` (or the config's choice when ``name`` is None) stands for."""
    name = name or config.generation.backend
    if name != "auto":
        if name not in BACKEND_MODULES:
            raise PrefloopError(f"--backend {name!r}: choose one of auto, {', '.join(BACKEND_MODULES)}")
        return name
    if config.generation.vllm_url:
        return "vllm-server"
    if importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def get_backend(config: Config, name: str | None = "auto") -> Backend:
    resolved = resolve_backend_name(config, name)
    try:
        module = importlib.import_module(BACKEND_MODULES[resolved])
    except ModuleNotFoundError as exc:
        raise PrefloopError(
            f"backend {resolved!r} is not available in this environment ({exc}); "
            "use --backend transformers, or see README section `generation`"
        ) from exc
    return module.make_backend(config)
