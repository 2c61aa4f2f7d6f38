"""The round's health gate: real tiny-model samples of real adapters, the latest unflagged one published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.config import Config
from loop.health_gate import ADAPTER_FILES, Checked, choose, gate, kept_steps
from models.catalog import TINY_DIR
from storage.imports import import_prompts
from testkit.demo_adapter import save_random_adapter
from training.dpo import CHECKPOINTS, checkpoint_dir
from training.settings import checkpoint_steps

IDEAS = ["fine-tuning LLMs", "model pruning", "vector databases", "how GPUs work", "data cleaning tips"]


def test_checkpoint_steps_are_evenly_spaced_and_end_at_the_last_step() -> None:
    assert checkpoint_steps(39, 4) == [10, 20, 29, 39]
    assert checkpoint_steps(40, 4) == [10, 20, 30, 40]
    assert checkpoint_steps(2, 4) == [1, 2]  # a run shorter than the checkpoints asked for
    assert checkpoint_steps(7, 1) == [7]


def test_choose_takes_the_latest_unflagged_else_the_latest_with_fewest_flags() -> None:
    assert choose([Checked(30, ("a",)), Checked(20, ()), Checked(10, ())]) == 20
    assert choose([Checked(30, ())]) == 30
    assert choose([Checked(30, ("a", "b")), Checked(20, ("a",)), Checked(10, ("c",))]) == 20
    assert choose([Checked(10, ("c",)), Checked(30, ("a", "b")), Checked(20, ("a",))]) == 20  # any order


def test_kept_steps_lists_complete_checkpoints_and_the_last(tmp_path: Path) -> None:
    for step in (3, 6):
        checkpoint_dir(tmp_path, step).mkdir(parents=True)
        (checkpoint_dir(tmp_path, step) / ADAPTER_FILES[0]).write_text("{}")
    (tmp_path / CHECKPOINTS / "step-9").mkdir()  # no adapter_config.json: a save cut short
    (tmp_path / CHECKPOINTS / "notes").mkdir()
    assert kept_steps(tmp_path, 12) == [3, 6, 12]
    assert kept_steps(tmp_path / "nothing-here", 12) == [12]


@pytest.fixture
def prompts_engine(engine: Engine, tmp_path: Path) -> Engine:
    csv = tmp_path / "ideas.csv"
    csv.write_text("Idea\n" + "\n".join(IDEAS) + "\n", encoding="utf-8")
    import_prompts(engine, csv, column="Idea", template="youtube-title", split="train")
    return engine


def _config() -> Config:
    return Config.model_validate(
        {
            "model": {"base": "tiny"},
            "generation": {"backend": "transformers", "batch_size": 32},
            "train": {"health_prompts": 4},
            "round": {"eval_samples_per_model": 8},
        }
    )


def _adapter(out: Path, *, broken: bool) -> Path:
    """``broken``: random LoRA weights at 32x the usual scale (the text stops being text); else peft's
    default start (B = 0), which writes exactly what base writes."""
    if broken:
        return save_random_adapter(TINY_DIR, out, rank=8, seed=1, lora_alpha=512)
    return save_random_adapter(TINY_DIR, out, rank=8, init_lora_weights=True)


@pytest.mark.slow
def test_gate_publishes_the_latest_checkpoint_whose_health_is_unflagged(
    prompts_engine: Engine, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    _adapter(checkpoint_dir(staging, 4), broken=False)
    _adapter(checkpoint_dir(staging, 8), broken=True)
    _adapter(staging, broken=True)  # the end of the run: step 12
    healthy = {f: (checkpoint_dir(staging, 4) / f).read_bytes() for f in ADAPTER_FILES}
    said: list[str] = []

    result = gate(prompts_engine, _config(), staging, name="round-1", last=12, echo=said.append)

    assert [c.step for c in result.checked] == [12, 8, 4]  # latest first, stopping at the first clean
    assert result.checked[0].flags and result.checked[1].flags and not result.checked[2].flags
    assert result.chosen == 4 and result.as_dict()["chosen_step"] == 4
    recorded = json.loads(json.dumps(result.as_dict()))  # the run's config stores it as JSON
    clean = result.checked[2].health
    assert clean is not None and recorded["checked"][2]["health"]["distinct_share"] == clean.distinct_share
    assert recorded["base"]["samples"] == clean.samples  # base sampled alike
    assert {f: (staging / f).read_bytes() for f in ADAPTER_FILES} == healthy
    assert not (staging / CHECKPOINTS).exists()
    assert said[-1] == "   step 4/12: health unflagged" and len(said) >= 3
    assert all(line.startswith(("   step 12/12: ", "   step 8/12: ")) for line in said[:-1])


@pytest.mark.slow
def test_gate_keeps_a_clean_end_after_one_check(prompts_engine: Engine, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    _adapter(checkpoint_dir(staging, 5), broken=True)
    _adapter(staging, broken=False)
    end = {f: (staging / f).read_bytes() for f in ADAPTER_FILES}

    result = gate(prompts_engine, _config(), staging, name="round-1", last=10, echo=lambda _: None)

    assert [(c.step, c.flags) for c in result.checked] == [(10, ())]
    assert result.chosen == 10 and {f: (staging / f).read_bytes() for f in ADAPTER_FILES} == end
    assert not (staging / CHECKPOINTS).exists()
