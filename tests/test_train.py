"""Real TRL DPO runs on the tiny model with a few dozen of the seed's labels (exported as TRL data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.config import TrainConfig
from core.errors import PrefloopError
from storage.exports import export_trl
from storage.imports import import_labels
from testkit.train_seed import seed_label_subset
from training.dpo import CHECKPOINTS, checkpoint_dir
from training.settings import checkpoint_steps

REPO = Path(__file__).resolve().parent.parent
FAST = {"num_train_epochs": 1, "min_steps": 0, "per_device_train_batch_size": 8, "logging_steps": 1}


@pytest.fixture
def pairs_dir(engine: Engine, tmp_path: Path) -> Path:
    """~50 train + ~10 validation pairs, through the real import and TRL export."""
    import_labels(
        engine, seed_label_subset(tmp_path / "labels.csv", 7), template="youtube-title", split="train"
    )
    result = export_trl(engine, tmp_path / "export", validation_share=0.15, seed=0)
    assert result.n_train >= 40 and result.n_validation >= 10
    return result.paths["dataset"]


def _logits(adapter: Path | None):
    import torch

    from models.loading import load_model, load_tokenizer

    tok = load_tokenizer("tiny")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "A video idea about rust"}],
        add_generation_prompt=True,
        return_dict=False,
    )
    model = load_model("tiny", adapter_path=str(adapter) if adapter else None, dtype="float32", device="cpu")
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


@pytest.mark.slow
def test_dpo_saves_a_servable_adapter_and_logs_every_step(pairs_dir: Path, tmp_path: Path) -> None:
    import torch

    from models.adapters import validate_servable_adapter
    from training.dpo import train_dpo

    out = tmp_path / "adapter"
    threads_while_training: set[int] = set()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = train_dpo(
            base_model="tiny",
            dataset_dir=pairs_dir,
            output_dir=out,
            train=TrainConfig(**FAST),
            on_log=lambda row: threads_while_training.add(torch.get_num_threads()),
        )
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert threads_while_training == {1} and threads_after == 2  # train.cpu_threads, then restored
    assert sorted(p.name for p in out.iterdir() if p.name != "README.md") == [
        "adapter_config.json",
        "adapter_model.safetensors",
        CHECKPOINTS,
    ]
    config = validate_servable_adapter(out, max_rank=16)
    assert "lm_head" not in config["target_modules"] and "q_proj" in config["target_modules"]
    steps = [row for row in result.metrics if "loss" in row]
    assert len(steps) == result.steps == -(-result.n_train // 8)  # one row per step (logging_steps=1)
    # train.checkpoints (4): the adapters of the earlier evenly spaced steps, each one servable
    earlier = checkpoint_steps(result.steps, 4)[:-1]
    assert len(earlier) == 3
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == sorted(f"step-{s}" for s in earlier)
    for step in earlier:
        validate_servable_adapter(checkpoint_dir(out, step), max_rank=16)
    first, last = _logits(checkpoint_dir(out, earlier[0])), _logits(out)
    assert not bool((first - last).abs().max() < 1e-6), "a checkpoint is the end's adapter"
    for key in ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert all(key in row for row in steps)
    assert "eval_loss" in result.final and 0 <= result.final["eval_rewards/accuracies"] <= 1
    assert result.hardware.device == "cpu" and result.pairs_per_second > 0
    assert not bool((_logits(out) - _logits(None)).abs().max() < 1e-6), "the adapter changes nothing"


@pytest.mark.slow
def test_continue_trains_the_previous_adapter_against_itself(pairs_dir: Path, tmp_path: Path) -> None:
    """With a parent adapter the reference is the parent policy: the first step's implicit rewards are 0."""
    from safetensors.torch import load_file

    from training.dpo import train_dpo

    first, second = tmp_path / "round-1", tmp_path / "round-2"
    train = TrainConfig(**FAST)
    train_dpo(base_model="tiny", dataset_dir=pairs_dir, output_dir=first, train=train)
    result = train_dpo(
        base_model="tiny", dataset_dir=pairs_dir, output_dir=second, train=train, parent_adapter=first
    )
    first_step = result.metrics[0]
    assert first_step["rewards/chosen"] == pytest.approx(0, abs=1e-4)
    assert first_step["rewards/rejected"] == pytest.approx(0, abs=1e-4)
    assert not (second / "ref").exists(), "only the trained adapter is saved, not TRL's frozen copy"
    before, after = (
        load_file(first / "adapter_model.safetensors"),
        load_file(second / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys()
    assert any(not bool((before[k] - after[k]).abs().max() < 1e-7) for k in before)


@pytest.mark.slow
def test_pref_divergence_changes_the_loss_trl_optimises(pairs_dir: Path, tmp_path: Path) -> None:
    """At the first step policy = reference, so every divergence gives DPO's ln 2; after it, JS and
    forward KL score the same log-ratios differently (f-DPO), so the losses part."""
    from training.dpo import train_dpo

    losses = {}
    for divergence in ("reverse_kl", "js_divergence"):
        result = train_dpo(
            base_model="tiny",
            dataset_dir=pairs_dir,
            output_dir=tmp_path / divergence,
            train=TrainConfig(**FAST, pref_ftx=0, checkpoints=1, pref_divergence=divergence),
        )
        assert result.dpo_settings["f_divergence_type"] == divergence
        losses[divergence] = [row["loss"] for row in result.metrics if "loss" in row]
    reverse, js = losses["reverse_kl"], losses["js_divergence"]
    assert reverse[0] == pytest.approx(0.6931, abs=1e-3) and js[0] == pytest.approx(reverse[0], abs=1e-5)
    assert any(abs(a - b) > 1e-4 for a, b in zip(reverse[1:], js[1:], strict=True))


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"lora_target": "q_proj,lm_head"}, "lm_head"), ({"lora_rank": 32}, "max LoRA rank 16")],
)
def test_settings_vllm_cannot_serve_are_refused_before_training(
    pairs_dir: Path, tmp_path: Path, settings: dict, message: str
) -> None:
    from training.dpo import train_dpo

    out = tmp_path / "adapter"
    with pytest.raises(PrefloopError, match=message):
        train_dpo(
            base_model="tiny",
            dataset_dir=pairs_dir,
            output_dir=out,
            train=TrainConfig(**FAST, **settings),
            max_lora_rank=16,
        )
    assert not out.exists()


def test_missing_export_is_one_clear_error(tmp_path: Path) -> None:
    from training.dpo import load_pairs

    with pytest.raises(PrefloopError, match="prefloop export --format trl"):
        load_pairs(tmp_path / "nothing")
