"""Knob mapping (TrainConfig -> DPOConfig / LoraConfig), the GPU profile, files beside an adapter."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import TrainConfig, load_config
from core.errors import PrefloopError
from training.plots import metric_columns, plot_loss_curve, write_metrics_csv
from training.settings import (
    Hardware,
    adapted_layers,
    dpo_settings,
    lora_settings,
    lora_targets,
    loss_terms,
    round_epochs,
    wants_bf16,
)

REPO = Path(__file__).resolve().parent.parent
QWEN2_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
CPU = Hardware(device="cpu", bf16=False)


@pytest.mark.parametrize(
    ("precision", "cuda", "supported", "hidden", "bf16"),
    [
        ("auto", False, True, 576, True),  # SmolLM2 on an AMX / AVX512-BF16 CPU
        ("auto", False, True, 256, False),  # the tiny model: bf16 autocast lost there
        ("auto", False, False, 576, False),  # no native bf16: emulated, far slower
        ("auto", True, True, 256, True),  # a bf16 GPU, any size
        ("auto", True, False, 896, False),
        ("fp32", False, True, 576, False),
        ("bf16", False, True, 256, True),  # asked for: as asked
    ],
)
def test_auto_precision_takes_bf16_where_it_was_measured_faster(precision, cuda, supported, hidden, bf16):
    assert wants_bf16(precision, cuda=cuda, supported=supported, hidden_size=hidden) is bf16


def test_pref_ftx_adds_a_weighted_sft_term() -> None:
    assert loss_terms(TrainConfig(pref_loss="sigmoid", pref_ftx=0.5)) == (["sigmoid", "sft"], [1.0, 0.5])
    assert loss_terms(TrainConfig(pref_loss="ipo", pref_ftx=0)) == (["ipo"], [1.0])
    assert loss_terms(TrainConfig(pref_loss="sigmoid, hinge", pref_ftx=0)) == (
        ["sigmoid", "hinge"],
        [1.0, 1.0],
    )


@pytest.mark.parametrize(
    ("loss", "ftx", "message"),
    [("dpo", 0, "unknown loss dpo"), ("sft", 0, "pref_ftx"), ("", 0, "empty")],
)
def test_bad_loss_settings_are_refused_with_the_field(loss: str, ftx: float, message: str) -> None:
    with pytest.raises(PrefloopError, match=message):
        loss_terms(TrainConfig(pref_loss=loss, pref_ftx=ftx))


def test_a_negative_sft_weight_is_refused_by_the_config() -> None:
    with pytest.raises(ValidationError, match="pref_ftx"):
        TrainConfig(pref_ftx=-1)


def test_all_targets_every_linear_projection_but_never_lm_head() -> None:
    assert lora_targets("all", QWEN2_LINEAR * 4) == sorted(set(QWEN2_LINEAR) - {"lm_head"})
    assert lora_targets("q_proj, v_proj", QWEN2_LINEAR) == ["q_proj", "v_proj"]
    with pytest.raises(PrefloopError, match="no linear module named qproj"):
        lora_targets("qproj", QWEN2_LINEAR)


def test_cpu_settings_avoid_the_trl_defaults_that_fail_here() -> None:
    train = TrainConfig()
    settings = dpo_settings(train, CPU, output_dir="/tmp/x", has_validation=True, n_train=1000)
    assert settings["bf16"] is False and settings["use_cpu"] is True
    assert settings["activation_checkpointing"] is False
    assert settings["learning_rate"] == train.learning_rate > 1e-6
    assert settings["save_strategy"] == "no" and settings["eval_strategy"] == "epoch"
    assert settings["max_length"] == train.cutoff_len
    no_eval = dpo_settings(
        TrainConfig(eval_steps=0), CPU, output_dir="/tmp/x", has_validation=True, n_train=1000
    )
    assert no_eval["eval_strategy"] == "no"
    assert (
        dpo_settings(train, CPU, output_dir="/tmp/x", has_validation=False, n_train=1000)["eval_strategy"]
        == "no"
    )


def test_a_small_round_runs_whole_epochs_more_until_it_takes_min_steps() -> None:
    assert round_epochs(1.0, 0, 16, 8) == 1.0  # 0: the configured epochs
    assert round_epochs(1.0, 64, 16, 8) == 32.0  # 2 steps an epoch
    assert round_epochs(1.0, 64, 100, 8) == 5.0  # 13 steps an epoch: 5 epochs are 65 steps
    assert round_epochs(2.0, 64, 1026, 8) == 2.0  # the seed: 129 steps an epoch, already past it
    assert round_epochs(1.5, 1, 0, 8) == 1.5
    settings = dpo_settings(
        TrainConfig(min_steps=64), CPU, output_dir="/tmp/x", has_validation=False, n_train=40
    )
    assert settings["num_train_epochs"] == 13.0  # 40 pairs / 8 per step: 5 steps an epoch


def test_settings_build_real_trl_and_peft_objects() -> None:
    from training.settings import build_dpo_config, build_lora_config

    train = TrainConfig(pref_ftx=0.3)
    dpo = build_dpo_config(
        dpo_settings(train, CPU, output_dir="/tmp/prefloop-test", has_validation=False, n_train=1000)
    )
    assert dpo.loss_type == ["sigmoid", "sft"] and dpo.loss_weights == [1.0, 0.3]
    assert dpo.beta == train.pref_beta and not dpo.bf16 and not dpo.gradient_checkpointing
    lora = build_lora_config(lora_settings(train, ["q_proj", "v_proj"], num_layers=30))
    assert lora.r == train.lora_rank and set(lora.target_modules) == {"q_proj", "v_proj"}
    assert lora.bias == "none" and not lora.use_dora and lora.modules_to_save is None
    assert lora.layers_to_transform == [24, 25, 26, 27, 28, 29]  # train.lora_layers=6: the top six
    every = build_lora_config(lora_settings(TrainConfig(lora_layers=0), ["q_proj"], num_layers=30))
    assert every.layers_to_transform is None


def test_lora_layers_counts_from_the_top_and_covers_small_models() -> None:
    assert adapted_layers(6, 30) == [24, 25, 26, 27, 28, 29]
    assert adapted_layers(1, 30) == [29]
    assert adapted_layers(0, 30) is None  # 0: every layer
    assert adapted_layers(6, 4) is None and adapted_layers(4, 4) is None  # the tiny model: all 4


def test_gpu_profile_is_the_seed_recipe() -> None:
    config = load_config(REPO / "configs" / "qwen2.5-0.5b-gpu.yaml")
    t = config.train
    assert config.model.base == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (t.learning_rate, t.num_train_epochs, t.cutoff_len) == (1e-4, 3, 2048)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (2, 8)
    assert (t.lora_rank, t.lora_alpha, t.lora_dropout, t.lora_target, t.lora_layers) == (8, 16, 0.0, "all", 0)
    assert (t.pref_beta, t.pref_loss, t.pref_ftx) == (0.1, "sigmoid", 0.0)
    gpu = dpo_settings(
        t, Hardware(device="cuda", bf16=True), output_dir="/tmp/x", has_validation=True, n_train=1000
    )
    assert gpu["bf16"] is True and gpu["use_cpu"] is False and gpu["loss_type"] == ["sigmoid"]


def test_metrics_csv_and_loss_curve(tmp_path: Path) -> None:
    rows = [
        {"step": 5, "epoch": 0.5, "loss": 0.69, "rewards/accuracies": 0.5, "grad_norm": 1.0},
        {"step": 10, "epoch": 1.0, "loss": 0.61, "rewards/accuracies": 0.7},
        {"step": 10, "epoch": 1.0, "eval_loss": 0.65, "eval_rewards/accuracies": 0.6},
    ]
    assert metric_columns(rows)[:5] == ["step", "epoch", "loss", "eval_loss", "rewards/accuracies"]
    with open(write_metrics_csv(rows, tmp_path / "metrics.csv"), encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["loss"] for r in read] == ["0.69", "0.61", ""] and read[2]["eval_loss"] == "0.65"
    png = plot_loss_curve(rows, tmp_path / "loss_curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_curve.png", "metrics.csv"]


def test_pref_divergence_reaches_dpo_config_and_is_refused_with_a_reverse_kl_only_loss() -> None:
    from trl import DPOConfig

    train = TrainConfig(pref_divergence="js_divergence", pref_loss="sigmoid")
    settings = dpo_settings(train, CPU, output_dir="/tmp/x", has_validation=False, n_train=8)
    assert DPOConfig(**settings).f_divergence_type == "js_divergence"
    refused = "pref_divergence=forward_kl: loss bco_pair is defined for reverse KL only"
    with pytest.raises(PrefloopError, match=refused):
        loss_terms(TrainConfig(pref_divergence="forward_kl", pref_loss="bco_pair"))
    with pytest.raises(ValidationError, match="pref_divergence"):
        TrainConfig(pref_divergence="kl")
