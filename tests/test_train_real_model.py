"""A CI-sized smoke test of training the default base (SmolLM2-135M-Instruct) with the CPU fast paths.

Three DPO steps on 20 seed pairs (2 ideas) with the default ``train`` settings (LoRA on the top 6
layers, hidden states below them cached, compact output layer, precomputed reference) must save a
servable adapter on layers 24-29 only that changes what the model writes. Full-size figures: `make bench`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.config import TrainConfig
from storage.exports import export_trl
from storage.imports import import_labels
from testkit.train_seed import seed_label_subset

REAL_BASE = "smollm2-135m"


def _last_logits(adapter: Path | None):
    import torch

    from models.loading import load_model, load_tokenizer

    tok = load_tokenizer(REAL_BASE)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Write a YouTube title about fine-tuning LLMs"}],
        add_generation_prompt=True,
        return_dict=False,
    )
    model = load_model(
        REAL_BASE, adapter_path=str(adapter) if adapter else None, dtype="float32", device="cpu"
    )
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_a_few_dpo_steps_on_the_real_model_train_only_the_top_layers(engine: Engine, tmp_path: Path) -> None:
    from models.adapters import read_adapter_config
    from training.dpo import train_dpo

    labels = seed_label_subset(tmp_path / "labels.csv", 2)
    import_labels(engine, labels, template="youtube-title", split="train")
    dataset = export_trl(engine, tmp_path / "export", validation_share=0.0).paths["dataset"]
    train = TrainConfig(num_train_epochs=1, min_steps=0, eval_steps=0, logging_steps=1)
    result = train_dpo(base_model=REAL_BASE, dataset_dir=dataset, output_dir=tmp_path / "lora", train=train)

    assert result.n_train == 20 and len([m for m in result.metrics if "loss" in m]) == 3
    assert result.extra["prefix_cache_layer"] == 24
    # each of the 2 ideas' 5 titles is one sequence however many pairs it is in: 10 computed, not 40
    assert result.extra["prefix_cache_sequences"] == 10
    saved = read_adapter_config(tmp_path / "lora")
    assert saved["layers_to_transform"] == [24, 25, 26, 27, 28, 29]
    change = (_last_logits(tmp_path / "lora") - _last_logits(None)).abs().max().item()
    assert change > 1e-3, f"the trained adapter moved the next-token logits by only {change:g}"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
