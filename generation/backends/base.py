"""The contract every generation backend meets (transformers, vLLM in-process, vLLM server).

Backends know nothing about the database: they turn chat prompts into texts for one policy. Storing,
deduplicating and pairing happen in ``generation.api`` so every backend's output is recorded alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; stored with every candidate so a result can be traced and reproduced."""

    n: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0
    stop: tuple[str, ...] = ()  # texts that end a completion (besides end-of-turn); not part of the text

    def as_dict(self) -> dict[str, float | int | list[str]]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class Generated:
    """One sampled completion: its text (special tokens removed), why it ended, how many tokens."""

    text: str
    finish_reason: (
        FinishReason  # "stop": ended at end-of-turn/eos or a stop text; "length": cut at max_new_tokens
    )
    n_tokens: int


@dataclass(frozen=True)
class Policy:
    """What writes the text: a base model, optionally with a LoRA adapter.

    ``lora_id`` is a unique integer per adapter version (the ModelVersion id); vLLM keys its adapter
    cache on it, so a new adapter version must never reuse an id. 0 means "no adapter".
    """

    name: str
    base_model: str
    adapter_path: str | None = None
    lora_id: int = 0


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(
        self, prompts: list[Messages], policy: Policy, sampling: SamplingParams
    ) -> list[list[Generated]]:
        """``sampling.n`` completions per prompt, in prompt order; same seed → same texts."""
        ...

    def close(self) -> None:
        """Free the model / stop owned processes. Safe to call twice."""
        ...
