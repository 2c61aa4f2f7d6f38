"""Training as the loop runs it, in three steps: export the labels, train with DPO, publish the adapter.

The loop (``loop.round``) calls them in order around one TrainingRun row (``training.registry``); each
returns a typed result. No step decides which round it is or whether to train: the loop does.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.config import Config
from core.errors import PrefloopError
from storage.files import atomic_replace_dir
from storage.models import ModelVersion, VersionKind
from training import registry
from training.dpo import TrainResult


@dataclass(frozen=True)
class LabelExport:
    """The train-purpose labels as a TRL dataset in ``var/runs/<version>/export``."""

    path: Path
    n_train: int
    n_validation: int
    dropped: dict[str, int]
    data_hash: str
    n_tie_rows: int  # of n_train: ties and both-bad, each as two opposite rows (train.use_ties)
    changed: bool  # False: the same data as the previous version's; nothing was written

    @property
    def dataset_dir(self) -> Path:
        return self.path / "dataset"


def export_labels(engine: Engine, config: Config, name: str, *, previous_hash: str | None) -> LabelExport:
    """Step 1: export all train-purpose labels (validation split by prompt) for version ``name``.

    Raises PrefloopError when there is no train pair at all. When the data hash equals
    ``previous_hash`` the export is discarded (``changed`` False) and the folder stays as it was.
    """
    from storage.exports import export_trl

    runs_dir = Path(config.var_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".export-", dir=runs_dir))
    build.chmod(0o755)
    export = export_trl(
        engine,
        build,
        validation_share=config.train.validation_share,
        seed=config.train.seed,
        ties=config.train.use_ties,
    )
    result = LabelExport(
        path=runs_dir / name / "export",
        n_train=export.n_train,
        n_validation=export.n_validation,
        dropped=export.dropped,
        data_hash=export.data_hash,
        n_tie_rows=export.n_tie_rows,
        changed=export.data_hash != previous_hash,
    )
    if export.n_train == 0 or not result.changed:
        shutil.rmtree(build, ignore_errors=True)
    if export.n_train == 0:
        dropped = ", ".join(f"{k} {v}" for k, v in export.dropped.items()) or "none"
        raise PrefloopError(
            f"no labelled train pairs to train on (left out: {dropped}); label pairs in the app, with "
            "`prefloop simulate`, or import them with `prefloop labels import`"
        )
    if result.changed:
        result.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_replace_dir(build, result.path)
    return result


def train_adapter(
    config: Config,
    labels: LabelExport,
    *,
    staging: Path,
    parent: ModelVersion,
    title: str,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Step 2: DPO + LoRA into ``staging``, in this process or through ``accelerate launch`` when
    ``train.num_processes`` > 1; ``metrics.csv`` and ``loss_curve.png`` are written beside the adapter."""
    from training.dpo import train_dpo
    from training.launch import run_accelerate, write_spec
    from training.plots import plot_loss_curve, write_metrics_csv

    job = {
        "base_model": config.model.base,
        "dataset_dir": labels.dataset_dir,
        "output_dir": staging,
        "train": config.train,
        "parent_adapter": Path(parent.adapter_path) if parent.kind == VersionKind.adapter else None,
        "max_lora_rank": config.generation.vllm_max_lora_rank,
    }
    if config.train.num_processes > 1:
        import torch

        spec = write_spec(staging.parent / f"{staging.name}.spec.json", **job)
        try:
            result = run_accelerate(spec, config.train, cpu=not torch.cuda.is_available())
        finally:
            spec.unlink(missing_ok=True)
    else:
        result = train_dpo(**job, on_log=on_log)
    write_metrics_csv(result.metrics, staging / "metrics.csv")
    plot_loss_curve(result.metrics, staging / "loss_curve.png", title=title)
    return result


def publish(
    engine: Engine,
    config: Config,
    *,
    run_id: int,
    staging: Path,
    name: str,
    parent: ModelVersion,
    result: TrainResult,
) -> ModelVersion:
    """Step 3: the adapter into ``var/adapters/<name>`` and registered as model version ``name``, with
    its run completed, in one transaction (``training.registry.publish_adapter``)."""
    return registry.publish_adapter(
        engine,
        run_id=run_id,
        staging=staging,
        root=registry.adapters_root(config.var_dir),
        name=name,
        base_model=config.model.base,
        parent_id=parent.id,
        metrics=result.metrics,
        resolved={
            "dpo": result.dpo_settings,
            "lora": result.lora_settings,
            "hardware": asdict(result.hardware),
            "seconds": result.seconds,
            **result.extra,
        },
    )
