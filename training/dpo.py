"""One TRL ``DPOTrainer`` run with a LoRA adapter on an exported DatasetDict (no database access here).

Two starting points (``train.round_policy``):
- no parent adapter: a fresh LoRA on the base; TRL's reference is the base with the adapter disabled;
- a parent adapter (``continue``): the previous round's adapter trained further; TRL copies it into a
  frozen "ref" adapter, so the reference is the previous policy.

Works unchanged under ``accelerate launch`` (one process per device): only the main process saves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.errors import PrefloopError
from training.settings import Hardware, detect_hardware, dpo_settings, lora_settings, lora_targets

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
CHECKPOINTS = "checkpoints"  # under the output folder: the adapters of ``train.checkpoints``


@dataclass
class TrainResult:
    """What a run reports: per-step log rows, the final validation figures, and the settings used."""

    metrics: list[dict[str, Any]]
    final: dict[str, float]
    n_train: int
    n_validation: int
    seconds: float
    cpu_seconds: float  # this process's CPU time over the same span: less moved by other jobs than wall time
    hardware: Hardware
    dpo_settings: dict[str, Any]
    lora_settings: dict[str, Any]
    is_main_process: bool = True
    steps: int = 0  # optimizer steps run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        epochs = self.dpo_settings["num_train_epochs"]
        return self.n_train * epochs / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        """The result as ``accelerate launch``'s main process hands it to the parent (``result.json``)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        data = json.loads(text)
        return cls(**{**data, "hardware": Hardware(**data["hardware"])})


@dataclass
class DpoJob:
    """A run ready to start: the model (with its LoRA settings checked), tokenizer, pairs and hardware."""

    model: Any
    tokenizer: Any
    data: Any  # DatasetDict: "train" and optional "validation"
    has_validation: bool
    lora_settings: dict[str, Any]
    parent_adapter: Path | None
    hardware: Hardware


def load_pairs(dataset_dir: Path):
    """The export's DatasetDict (``train`` and optional ``validation``), pair columns only."""
    from datasets import load_from_disk

    try:
        data = load_from_disk(str(dataset_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise PrefloopError(
            f"{dataset_dir}: not a saved DatasetDict ({exc}); run `prefloop export --format trl --out DIR` "
            "and pass DIR/dataset"
        ) from exc
    if "train" not in data or len(data["train"]) == 0:
        raise PrefloopError(f"{dataset_dir}: no training pairs; label some train pairs first")
    for split in data:
        missing = [c for c in PAIR_COLUMNS if c not in data[split].column_names]
        if missing:
            raise PrefloopError(f"{dataset_dir}: split {split!r} lacks column(s) {', '.join(missing)}")
        extra = [c for c in data[split].column_names if c not in PAIR_COLUMNS]
        if extra:
            data[split] = data[split].remove_columns(extra)
    return data


def _linear_leaf_names(model) -> list[str]:
    import torch

    return [
        name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)
    ]


def _metrics_callback(rows: list[dict[str, Any]], on_log: Callable[[dict[str, Any]], None] | None):
    from transformers import TrainerCallback

    class KeepLogs(TrainerCallback):
        """Keeps every logging step's figures (train and eval rows) with step and epoch."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
            entry.update({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})
            rows.append(entry)
            if on_log is not None:
                on_log(entry)

    return KeepLogs()


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    """Where the adapter after optimizer step ``step`` is kept (the end's is ``output_dir`` itself)."""
    return Path(output_dir) / CHECKPOINTS / f"step-{step}"


def _checkpoint_callback(output_dir: Path, checkpoints: int):
    from transformers import TrainerCallback

    from training.settings import checkpoint_steps

    class KeepAdapters(TrainerCallback):
        """Saves the adapter (weights and config only) at the steps of ``checkpoint_steps`` before the end."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            steps = checkpoint_steps(state.max_steps, checkpoints)[:-1]
            if state.is_world_process_zero and state.global_step in steps:
                plain = getattr(model, "module", model)
                plain.save_pretrained(
                    checkpoint_dir(output_dir, state.global_step), selected_adapters=["default"]
                )

    return KeepAdapters()


def _quiet_progress(trainer) -> None:
    """Keep the progress bar but drop its printing of every log dict (they go to the database and CSV)."""
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarOnly)


def _final_validation(trainer, validation) -> dict[str, float]:
    """The validation figures at the last step: logged by the epoch-end evaluation, else evaluated now.

    Decided from ``state.log_history``, which every process holds alike: under ``accelerate launch`` all
    processes must take the same branch, or one waits forever in ``evaluate``'s collective calls.
    """
    last_step = trainer.state.global_step
    logged = [row for row in trainer.state.log_history if "eval_loss" in row and row.get("step") == last_step]
    found = logged[-1] if logged else trainer.evaluate(validation if trainer.eval_dataset is None else None)
    return {k: float(v) for k, v in found.items() if k.startswith("eval_") and isinstance(v, int | float)}


def prepare_dpo(
    *,
    base_model: str,
    dataset_dir: Path,
    train: TrainConfig,
    parent_adapter: Path | None = None,
    max_lora_rank: int = 16,
) -> DpoJob:
    """Load the pairs and the model; raises PrefloopError before any training when the LoRA settings
    are not servable by vLLM."""
    from models.adapters import validate_lora_settings
    from models.loading import load_model, load_tokenizer, model_config

    hardware = detect_hardware(train, hidden_size=model_config(base_model).hidden_size)
    data = load_pairs(dataset_dir)
    has_validation = "validation" in data and len(data["validation"]) > 0
    tokenizer = load_tokenizer(base_model)
    model = load_model(
        base_model,
        adapter_path=str(parent_adapter) if parent_adapter else None,
        dtype="float32",
        trainable=True,
        device=hardware.device,
    )
    if parent_adapter is not None:
        lora = dict(model.peft_config["default"].to_dict())
        lora_map = {k: lora.get(k) for k in ("r", "lora_alpha", "lora_dropout", "bias", "use_dora")}
        lora_map["target_modules"] = sorted(lora.get("target_modules") or [])
        lora_map["modules_to_save"] = lora.get("modules_to_save")
        lora_map["layers_to_transform"] = lora.get("layers_to_transform")
    else:
        targets = lora_targets(train.lora_target, _linear_leaf_names(model))
        lora_map = lora_settings(train, targets, model.config.num_hidden_layers)
    validate_lora_settings(lora_map, max_lora_rank)
    return DpoJob(model, tokenizer, data, has_validation, lora_map, parent_adapter, hardware)


def train_dpo(
    *,
    base_model: str,
    dataset_dir: Path,
    output_dir: Path,
    train: TrainConfig,
    parent_adapter: Path | None = None,
    max_lora_rank: int = 16,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train and save the adapter (adapter_config.json + weights only) into ``output_dir``."""
    from models.loading import torch_threads

    job = prepare_dpo(
        base_model=base_model,
        dataset_dir=dataset_dir,
        train=train,
        parent_adapter=parent_adapter,
        max_lora_rank=max_lora_rank,
    )
    has_validation = job.has_validation
    settings = dpo_settings(
        train,
        job.hardware,
        output_dir=str(output_dir),
        has_validation=has_validation,
        n_train=len(job.data["train"]),
    )
    # one CPU thread by default: 2 threads on 2 shared cores thrash (README "training"); restored after
    with (
        torch_threads(train.cpu_threads if job.hardware.device == "cpu" else None),
        _fast_paths(job.model, train, job.hardware, job.lora_settings) as extra,
    ):
        result = run_dpo(job, settings, on_log, checkpoints=train.checkpoints)
    result.extra.update(extra)
    return result


@contextmanager
def _fast_paths(model, train: TrainConfig, hardware: Hardware, lora_map: dict[str, Any]) -> Iterator[dict]:
    """The CPU speed-ups that leave TRL's loss unchanged (README "Training speed"), for the whole run.

    Yields a dict that reports, after the run, how many sequences went through the frozen layers.
    """
    from training.lm_head import completion_positions_only
    from training.prefix_cache import cached_prefix

    extra: dict[str, Any] = {}
    with ExitStack() as stack:
        if train.score_completions_only and hardware.device == "cpu":
            stack.enter_context(completion_positions_only())
        layers = lora_map.get("layers_to_transform")
        if train.cache_frozen_layers and layers:
            plain = model.get_base_model() if hasattr(model, "get_base_model") else model
            cache = stack.enter_context(cached_prefix(plain, min(layers)))
            extra["prefix_cache_layer"] = min(layers)
        else:
            cache = None
        yield extra
        if cache is not None:
            extra["prefix_cache_sequences"] = cache.computed


def run_dpo(
    job: DpoJob,
    settings: dict[str, Any],
    on_log: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: int = 1,
) -> TrainResult:
    """One ``DPOTrainer`` run of ``job`` with these DPOConfig fields; the adapter goes to their output_dir,
    and with ``checkpoints`` > 1 the earlier ones to ``checkpoint_dir`` (``train.checkpoints``)."""
    from trl import DPOTrainer

    from training.settings import build_dpo_config, build_lora_config

    model, tokenizer, data, has_validation = job.model, job.tokenizer, job.data, job.has_validation
    rows: list[dict[str, Any]] = []
    # timed from the trainer's construction: tokenising and TRL's reference precompute happen there
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer = DPOTrainer(
        model=model,
        args=build_dpo_config(settings),
        train_dataset=data["train"],
        # only when it evaluates during training: TRL's __init__ precomputes its reference log-probs
        eval_dataset=data["validation"] if has_validation and settings["eval_strategy"] != "no" else None,
        processing_class=tokenizer,
        peft_config=None if job.parent_adapter is not None else build_lora_config(job.lora_settings),
        callbacks=[
            _metrics_callback(rows, on_log),
            _checkpoint_callback(Path(settings["output_dir"]), checkpoints),
        ],
    )
    _quiet_progress(trainer)
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    final = _final_validation(trainer, data["validation"]) if has_validation else {}
    main = trainer.accelerator.is_main_process
    hardware = replace(job.hardware, processes=trainer.accelerator.num_processes)
    if main:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.save_pretrained(settings["output_dir"], selected_adapters=["default"])
    trainer.accelerator.wait_for_everyone()
    return TrainResult(
        metrics=rows,
        final=final,
        n_train=len(data["train"]),
        n_validation=len(data["validation"]) if has_validation else 0,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        hardware=hardware,
        dpo_settings=settings,
        lora_settings=job.lora_settings,
        is_main_process=main,
        steps=trainer.state.global_step,
    )
