"""The multi-process path: `prefloop train` with train.num_processes=2 runs `accelerate launch` (2 CPU
processes, gloo) on the tiny model, and the parent process registers the one adapter they trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import make_engine
from testkit.train_seed import seed_label_subset

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_processes_train_one_registered_adapter(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'prefloop.db'}"
    env = {**os.environ, "PREFLOOP_DB": db, "HF_HUB_OFFLINE": "1"}

    def prefloop(*args: str) -> str:
        cmd = [sys.executable, "-m", "prefloop.cli", "--set", "model.base=tiny", *args]
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    labels = seed_label_subset(tmp_path / "labels.csv", 6)
    prefloop("labels", "import", str(labels), "--template", "youtube-title", "--split", "train")
    settings = (
        "train.num_processes=2",
        "train.num_train_epochs=1",
        "train.min_steps=0",
        "train.logging_steps=1",
    )
    out = prefloop(*(arg for setting in settings for arg in ("--set", setting)), "train")
    assert "round-1" in out
    engine = make_engine(db)
    with engine.connect() as conn:
        config, metrics, status = conn.execute(text("SELECT config, metrics, status FROM training_run")).one()
        adapter = conn.execute(
            text("SELECT adapter_path FROM model_version WHERE name = 'round-1'")
        ).scalar_one()
    engine.dispose()
    config = json.loads(config) if isinstance(config, str) else config
    metrics = json.loads(metrics) if isinstance(metrics, str) else metrics
    assert status == "completed"
    assert config["resolved"]["hardware"]["processes"] == 2, "accelerate did not start two processes"
    steps = [row for row in metrics if "loss" in row]
    n_train = config["export"]["n_train"]
    assert len(steps) == -(-n_train // (8 * 2)), "each step takes a batch per process: half the steps"
    assert (Path(adapter) / "adapter_model.safetensors").is_file()
    assert not any(
        p.name.startswith(".staging-") for p in (tmp_path / "prefloop-work" / "adapters").iterdir()
    )
