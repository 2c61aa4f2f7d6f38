"""The typed config refuses nonsense with one line naming the key; every number has a bound."""

from __future__ import annotations

import subprocess
import sys

import pytest
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from core.config import Config, ConfigError, load_config
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("annotate.lease_seconds=-10", "annotate.lease_seconds"),
        ("annotate.lease_seconds=0", "annotate.lease_seconds"),
        ("annotate.overlap_train=-3", "annotate.overlap_train"),
        ("annotate.overlap_eval=0", "annotate.overlap_eval"),
        ("annotate.eval_share=7", "annotate.eval_share"),
        ("annotate.undo_seconds=0", "annotate.undo_seconds"),
        ("data.eval_share=7", "data.eval_share"),
        ("generation.top_p=0", "generation.top_p"),
        ("train.learning_rate=-1", "train.learning_rate"),
        ("train.validation_share=1", "train.validation_share"),
        ("report.length_band=[80, 10]", "report.length_band"),
    ],
)
def test_nonsense_is_refused_naming_the_key(item, key):
    with pytest.raises(ConfigError, match=f"^config: {key}: ") as exc:
        load_config(None, [item])
    assert "\n" not in str(exc.value)


def test_the_tiny_models_old_name_says_the_new_one(tmp_path):
    config = tmp_path / "prefloop.yaml"
    config.write_text("model:\n  base: embedded\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert str(exc.value) == (
        f"{config}: model.base: Value error, 'embedded' is the old name of the 'tiny' model; use "
        "model.base: tiny (a folder of that name: ./embedded)"
    )


def _numeric_fields(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _numeric_fields(annotation, f"{prefix}{name}.")
        elif annotation in (int, float, int | None, float | None):
            yield f"{prefix}{name}", info


def test_every_number_has_a_lower_and_an_upper_bound():
    unbounded = [
        key
        for key, info in _numeric_fields(Config)
        if not any(isinstance(m, Ge | Gt) for m in info.metadata)
        or not any(isinstance(m, Le | Lt) for m in info.metadata)
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    "item",
    [
        "train.num_train_epochs=3000",
        "train.learning_rate=5",
        "generation.n=500",
        "annotate.lease_seconds=999999999",
    ],
)
def test_a_number_past_its_upper_bound_is_refused(item):
    with pytest.raises(ConfigError, match="less than or equal to"):
        load_config(None, [item])


def test_the_cli_exits_non_zero_with_the_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefloop.cli",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--set",
            "annotate.lease_seconds=-10",
            "status",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert (done.stdout + done.stderr).strip() == (
        "error: config: annotate.lease_seconds: Input should be greater than 0"
    )


def test_a_base_models_recipe_fills_only_what_the_config_leaves_unset(tmp_path):
    assert load_config(None, []).train.num_train_epochs == 1.0  # SmolLM2: 1 epoch
    assert load_config(None, ["model.base=tiny"]).train.num_train_epochs == 2.0
    assert load_config(None, ["model.base=tiny", "train.num_train_epochs=3"]).train.num_train_epochs == 3.0
    file = tmp_path / "prefloop.yaml"
    file.write_text("model:\n  base: tiny\ntrain:\n  num_train_epochs: 1.5\n", encoding="utf-8")
    assert load_config(file).train.num_train_epochs == 1.5
    file.write_text("model:\n  base: tiny\ntrain:\n  learning_rate: 0.001\n", encoding="utf-8")
    assert (load_config(file).train.num_train_epochs, load_config(file).train.learning_rate) == (2.0, 1e-3)
    with pytest.raises(ConfigError, match="^config: train: "):
        load_config(None, ["model.base=tiny", "train=5"])  # a malformed section is still refused, not mended
