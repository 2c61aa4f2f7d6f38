"""Two databases on one machine, a round each: every artifact stays with its own database.

Both projects share the environment a user would have (the same ``PREFLOOP_VAR``, the same checkout);
each database's adapters, exports and runs go to its own work folder, and after both rounds each
database's ``round-1`` still loads and generates from its own weights.
"""

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

pytestmark = [pytest.mark.fault, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def prefloop(db: str, env: dict[str, str], *args: str) -> str:
    cmd = [
        sys.executable,
        "-m",
        "prefloop.cli",
        "--db",
        db,
        "--set",
        "generation.backend=transformers",
        "--set",
        "model.base=tiny",  # the 4 M-parameter fixture model: two rounds in seconds
        *args,
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def scalar(db: str, sql: str):
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_two_databases_each_keep_their_own_round_one(tmp_path: Path) -> None:
    env = {**os.environ, "PREFLOOP_VAR": str(tmp_path / "shared-var"), "HF_HUB_OFFLINE": "1"}
    dbs = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in ("alpha", "beta")}
    labels = {
        "alpha": seed_label_subset(tmp_path / "alpha.csv", 4),
        "beta": seed_label_subset(tmp_path / "b.csv", 6),
    }
    adapters = {}
    for name, db in dbs.items():
        prefloop(
            db, env, "labels", "import", str(labels[name]), "--template", "youtube-title", "--split", "train"
        )
        settings = ("train.num_train_epochs=1", "train.logging_steps=2")
        assert "round-1" in prefloop(db, env, *(a for s in settings for a in ("--set", s)), "train")
        adapters[name] = Path(scalar(db, "SELECT adapter_path FROM model_version WHERE name = 'round-1'"))
    assert adapters == {name: tmp_path / f"{name}-work" / "adapters" / "round-1" for name in dbs}
    assert (
        not (tmp_path / "shared-var").exists() and not (REPO / "var" / "adapters" / "round-1-alpha").exists()
    )
    for name, db in dbs.items():
        exported = scalar(db, "SELECT count(*) FROM training_run WHERE status = 'completed'")
        assert (
            exported == 1
            and (tmp_path / f"{name}-work" / "runs" / "round-1" / "export" / "train.jsonl").is_file()
        )
        # trained on this database's own labels (4 vs 6 ideas, 10 pairs each)
        export = json.loads(scalar(db, "SELECT config FROM training_run"))["export"]
        assert export["n_train"] + export["n_validation"] == scalar(db, "SELECT count(*) FROM judgment")
        out = prefloop(db, env, "generate", "--policy", "round-1", "--n", "2", "--round", "1", "--no-pairs")
        assert "policy round-1" in out
        made = scalar(
            db,
            "SELECT count(*) FROM candidate c JOIN model_version v ON v.id = c.model_version_id "
            "WHERE v.name = 'round-1'",
        )
        assert made > 0, f"{name}: round-1 generated nothing"
    assert (adapters["alpha"] / "adapter_model.safetensors").read_bytes() != (
        adapters["beta"] / "adapter_model.safetensors"
    ).read_bytes()
