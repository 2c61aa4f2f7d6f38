"""The ``vllm`` backend: vLLM's offline engine in this process, a ``LoRARequest`` per adapter version.

For an environment where vLLM and prefloop share one interpreter (a GPU machine with the ``vllm``
extra, or ``.venv-vllm`` with the repo on PYTHONPATH). It imports only vLLM, the standard library and
the backend dataclasses, and vLLM only when first used. Offline, an adapter vLLM cannot serve kills
the engine (``EngineDeadError``) once it reaches ``generate``, so each adapter is checked twice first:
its config by ``models.adapters``, then its weights by ``llm_engine.add_lora``, which raises and
leaves the engine alive.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import PrefloopError
from generation.backends.base import Generated, Messages, Policy, SamplingParams
from generation.backends.vllm_seeds import request_seed
from models.adapters import check_max_lora_rank, validate_servable_adapter

if TYPE_CHECKING:
    from core.config import Config


class VllmInProcessBackend:
    """One ``vllm.LLM`` for the current base model; switching base rebuilds it."""

    name = "vllm"

    def __init__(
        self,
        max_lora_rank: int = 16,
        dtype: str = "auto",
        resolve_model: Callable[[str], str] = str,
        kv_cache_gib: int = 1,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        self.max_lora_rank = max_lora_rank
        self.dtype = dtype
        self.resolve_model = resolve_model
        self.engine_args = engine_args or {}
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))  # read by the CPU build only
        self._llm: Any = None
        self._base: str | None = None
        self._checked_loras: set[int] = set()

    def _engine(self, base_model: str) -> Any:
        if self._llm is None or self._base != base_model:
            self.close()
            from vllm import LLM
            from vllm.platforms import current_platform

            self._llm = LLM(
                model=self.resolve_model(base_model),
                dtype=self.dtype,
                enable_lora=True,
                max_lora_rank=self.max_lora_rank,
                enforce_eager=True,
                # CPU: chunked prefill of a seeded request kills the engine (see generation.serve).
                enable_chunked_prefill=not current_platform.is_cpu(),
                **self.engine_args,
            )
            self._base = base_model
        return self._llm

    def _lora_request(self, llm: Any, policy: Policy) -> Any:
        if not policy.adapter_path:
            return None
        if policy.lora_id < 1:
            raise PrefloopError(
                f"policy {policy.name!r}: an adapter needs a positive lora_id (its model version id), "
                f"got {policy.lora_id}"
            )
        from vllm.lora.request import LoRARequest

        path = str(Path(policy.adapter_path).expanduser().resolve())
        request = LoRARequest(f"{policy.name}-{policy.lora_id}", policy.lora_id, path)
        if policy.lora_id not in self._checked_loras:
            validate_servable_adapter(path, self.max_lora_rank, self.resolve_model(policy.base_model))
            try:
                llm.llm_engine.add_lora(request)
            except Exception as exc:  # vLLM raises ValueError/RuntimeError subclasses with the reason
                raise PrefloopError(f"vLLM cannot load adapter {path}: {exc}") from exc
            self._checked_loras.add(policy.lora_id)
        return request

    def generate(
        self, prompts: list[Messages], policy: Policy, sampling: SamplingParams
    ) -> list[list[Generated]]:
        """Prompt ``i`` is sampled with ``request_seed(sampling.seed, i)`` (as the server backend does)."""
        from vllm import SamplingParams as VllmSamplingParams

        llm = self._engine(policy.base_model)
        lora = self._lora_request(llm, policy)
        # Start from the model's generation_config defaults, as vLLM's server does for each request.
        defaults = llm.llm_engine.model_config.get_diff_sampling_param()
        params = [
            VllmSamplingParams.from_optional(
                **{
                    **defaults,
                    "n": sampling.n,
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "max_tokens": sampling.max_new_tokens,
                    "seed": request_seed(sampling.seed, i),
                    "stop": list(sampling.stop),
                }
            )
            for i in range(len(prompts))
        ]
        outputs = llm.chat(prompts, params, use_tqdm=False, lora_request=lora)
        return [
            [
                Generated(
                    text=o.text.strip(),
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                    n_tokens=len(o.token_ids),
                )
                for o in out.outputs
            ]
            for out in outputs
        ]

    def close(self) -> None:
        llm, self._llm, self._base = self._llm, None, None
        self._checked_loras.clear()
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()


def make_backend(config: Config) -> VllmInProcessBackend:
    from models.loading import resolve_model

    return VllmInProcessBackend(
        max_lora_rank=check_max_lora_rank(config.generation.vllm_max_lora_rank),
        dtype=config.model.dtype,
        resolve_model=resolve_model,
    )
