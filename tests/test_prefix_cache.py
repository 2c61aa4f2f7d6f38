"""The CPU fast paths give TRL's own loss, metrics and gradients on the same batch (tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.errors import PrefloopError
from storage.exports import export_trl
from storage.imports import import_labels
from testkit.train_seed import seed_label_subset

FIRST_ADAPTED = 2  # the tiny model has 4 decoder layers; LoRA on the top 2


@pytest.fixture
def pairs_dir(engine: Engine, tmp_path: Path) -> Path:
    import_labels(engine, seed_label_subset(tmp_path / "labels.csv", 2), template="youtube-title")
    return export_trl(engine, tmp_path / "export", validation_share=0.0, seed=0).paths["dataset"]


def _trainer(dataset_dir: Path, tmp_path: Path):
    import torch
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from models.loading import load_model, load_tokenizer
    from training.dpo import load_pairs

    torch.manual_seed(0)
    model = load_model("tiny", dtype="float32", trainable=True, device="cpu")
    trainer = DPOTrainer(
        model=model,
        args=DPOConfig(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=8,
            use_cpu=True,
            bf16=False,
            report_to=[],
            activation_checkpointing=False,
        ),
        train_dataset=load_pairs(dataset_dir)["train"],
        processing_class=load_tokenizer("tiny"),
        peft_config=LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            layers_to_transform=list(range(FIRST_ADAPTED, 4)),
            task_type="CAUSAL_LM",
        ),
    )
    with torch.no_grad():  # a trained-looking adapter, so that policy and reference differ
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return trainer, model


def _loss_metrics_grads(trainer, batch):
    trainer.model.zero_grad()
    trainer._metrics["train"].clear()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    # num_tokens is TRL's running count of tokens seen, not a figure of this batch
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}
    return float(loss), metrics, grads


def test_cached_prefix_and_compact_head_match_plain_path(pairs_dir: Path, tmp_path: Path) -> None:
    from training.lm_head import completion_positions_only
    from training.prefix_cache import cached_prefix

    trainer, model = _trainer(pairs_dir, tmp_path)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # padded rows are exercised
    distinct = {
        tuple(ids[mask.bool()].tolist())
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    }
    plain = _loss_metrics_grads(trainer, batch)
    with completion_positions_only(), cached_prefix(model, FIRST_ADAPTED) as cache:
        filling = _loss_metrics_grads(trainer, batch)  # policy and reference: each sequence computed once
        assert cache.computed == len(distinct)
        cached = _loss_metrics_grads(trainer, batch)
        assert cache.computed == len(distinct)  # second pass: every row from the cache
    again = _loss_metrics_grads(trainer, batch)  # restored on exit

    for fast in (filling, cached, again):
        assert fast[0] == pytest.approx(plain[0], abs=1e-5)
        assert fast[1].keys() == plain[1].keys()
        for key, value in plain[1].items():
            assert fast[1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        assert fast[2].keys() == plain[2].keys() and len(plain[2]) > 0
        for name, grad in plain[2].items():
            assert (fast[2][name] - grad).abs().max() <= 1e-5 * max(1.0, grad.abs().max()), name


def test_cached_prefix_refuses_an_adapter_below_the_cached_layer(pairs_dir: Path, tmp_path: Path) -> None:
    from training.prefix_cache import cached_prefix

    trainer, model = _trainer(pairs_dir, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    with cached_prefix(model, FIRST_ADAPTED + 1), pytest.raises(PrefloopError, match="below layer 3"):
        trainer.compute_loss(trainer.model, batch)
