"""Train only the top of the network: the hidden states entering the first adapted layer, cached.

With LoRA on decoder layers ``L..N-1`` only (``train.lora_layers``), layers ``0..L-1`` are frozen and the
same for the policy, for the reference (adapter disabled) and in every epoch, so their output for a
sequence depends on its tokens alone. ``cached_prefix`` computes it once per sequence (the first pass over
the data: TRL's reference precompute, or the first epoch) and every later forward runs layers ``L..N-1``,
the final norm and TRL's fused LM head only. TRL's trainer, loss and metrics are untouched: the model just
computes the same ``last_hidden_state`` faster (tests/test_prefix_cache.py checks loss and gradients
against the plain forward on the same batch).

Valid for a decoder whose rows are flushed left (real tokens first, padding after), as TRL's DPO collator
builds them: a causal layer's output at a real position then does not depend on the padding after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import PrefloopError


def run_layers(backbone: Any, hidden, attention_mask, layers) -> Any:
    """Run decoder ``layers`` of a Llama-style ``backbone`` on ``hidden``; returns the new hidden states.

    hidden: [B, T, H] float, the states entering ``layers[0]``; attention_mask: [B, T] (1 = real token,
    rows flushed left); returns [B, T, H]. Positions are 0..T-1 on every row (no left padding), the causal
    mask and rotary embeddings are built exactly as the backbone's own forward builds them.
    """
    import torch
    from transformers.masking_utils import create_causal_mask

    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    mask = create_causal_mask(
        config=backbone.config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        cache=None,
        position_ids=position_ids,
    )
    position_embeddings = backbone.rotary_emb(hidden, position_ids=position_ids)
    for layer in layers:
        hidden = layer(
            hidden, attention_mask=mask, position_embeddings=position_embeddings, position_ids=position_ids
        )
    return hidden


class PrefixCache:
    """Hidden states entering layer ``first_layer``, one [length, H] tensor per distinct token sequence."""

    def __init__(self, backbone: Any, first_layer: int) -> None:
        self.backbone, self.first_layer = backbone, first_layer
        self.store: dict[bytes, Any] = {}
        self.computed = 0  # sequences run through the frozen layers (each once)

    def hidden(self, input_ids, attention_mask):
        """[B, T] token ids and mask (rows flushed left) -> [B, T, H] states entering ``first_layer``.

        Padding positions hold zeros: nothing real attends to them (causal mask, padding after the tokens)
        and their labels are -100.
        """
        import torch

        lengths = attention_mask.sum(dim=1).tolist()
        if not torch.equal(
            attention_mask.bool(), _flushed_left(lengths, input_ids.shape[1], input_ids.device)
        ):
            raise PrefloopError("prefix cache: a batch row is not flushed left (padding before tokens)")
        keys = [input_ids[i, :n].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        missing = sorted({keys.index(k) for k in keys if k not in self.store})
        if missing:
            with torch.no_grad():
                rows = torch.tensor(missing, device=input_ids.device)
                states = run_layers(
                    self.backbone,
                    self.backbone.embed_tokens(input_ids[rows]),
                    attention_mask[rows],
                    self.backbone.layers[: self.first_layer],
                )
            for j, i in enumerate(missing):
                self.store[keys[i]] = states[j, : lengths[i]].detach()
            self.computed += len(missing)
        out = None
        for i, key in enumerate(keys):
            cached = self.store[key]
            if out is None:
                out = cached.new_zeros((input_ids.shape[0], input_ids.shape[1], cached.shape[-1]))
            out[i, : lengths[i]] = cached
        return out


def _flushed_left(lengths: list[int], width: int, device):
    import torch

    return torch.arange(width, device=device).unsqueeze(0) < torch.tensor(lengths, device=device).unsqueeze(1)


def check_frozen_below(backbone: Any, first_layer: int) -> None:
    """Raise unless layers ``0..first_layer-1`` and the embedding hold no adapter and nothing trainable."""
    frozen = [backbone.embed_tokens, *backbone.layers[:first_layer]]
    for module in frozen:
        for name, param in module.named_parameters():
            if param.requires_grad or "lora_" in name:
                raise PrefloopError(
                    f"prefix cache: {name} below layer {first_layer} is adapted or trainable; the cached "
                    "states would be stale (set train.lora_layers to cover all adapted layers, or 0)"
                )


@contextmanager
def cached_prefix(model: Any, first_layer: int) -> Iterator[PrefixCache]:
    """Within the block, ``model.model`` (the backbone) reads layer ``first_layer``'s input from a cache.

    ``model`` is the plain ``*ForCausalLM`` before peft wraps it (peft injects LoRA into the same layer
    objects, which this forward runs). Called with anything but ids and a mask (e.g. ``inputs_embeds``,
    a KV cache for generation), the backbone's own forward runs instead. Restored on exit.
    """
    from transformers.modeling_outputs import BaseModelOutputWithPast

    backbone = model.model
    if not 0 < first_layer < len(backbone.layers):
        raise PrefloopError(f"prefix cache: first layer {first_layer} outside 1..{len(backbone.layers) - 1}")
    cache = PrefixCache(backbone, first_layer)
    original = backbone.forward

    def forward(input_ids=None, attention_mask=None, use_cache=None, **kwargs):
        # peft passes inputs_embeds/output_* as None and return_dict; anything set means another use
        asked = {k: v for k, v in kwargs.items() if v is not None and k != "return_dict"}
        if input_ids is None or attention_mask is None or use_cache or asked:
            return original(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, **kwargs)
        check_frozen_below(backbone, first_layer)
        hidden = cache.hidden(input_ids, attention_mask)
        hidden = run_layers(backbone, hidden, attention_mask, backbone.layers[first_layer:])
        return BaseModelOutputWithPast(last_hidden_state=backbone.norm(hidden))

    backbone.forward = forward
    try:
        yield cache
    finally:
        del backbone.forward
