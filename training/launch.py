"""Run one training job from a JSON spec, as ``accelerate launch`` starts it on every process.

``python -m training.launch SPEC.json`` (or ``accelerate launch --num_processes K -m training.launch
SPEC.json``) trains into the spec's ``output_dir`` and the main process writes ``result.json`` there. No
database access: the parent ``prefloop`` process exports before and registers after, so K processes never
race on the database. This is the path to many GPUs (accelerate's DeepSpeed/FSDP configs).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.errors import PrefloopError
from core.net import free_port
from training.dpo import TrainResult, train_dpo

RESULT_FILE = "result.json"


def write_spec(
    path: Path,
    *,
    base_model: str,
    dataset_dir: Path,
    output_dir: Path,
    train: TrainConfig,
    parent_adapter: Path | None,
    max_lora_rank: int,
) -> Path:
    spec = {
        "base_model": base_model,
        "dataset_dir": str(dataset_dir),
        "output_dir": str(output_dir),
        "train": train.model_dump(mode="json"),
        "parent_adapter": str(parent_adapter) if parent_adapter else None,
        "max_lora_rank": max_lora_rank,
    }
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return path


def read_spec(path: Path) -> dict[str, Any]:
    """The spec as ``train_dpo``'s keyword arguments."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        "base_model": spec["base_model"],
        "dataset_dir": Path(spec["dataset_dir"]),
        "output_dir": Path(spec["output_dir"]),
        "train": TrainConfig.model_validate(spec["train"]),
        "parent_adapter": Path(spec["parent_adapter"]) if spec["parent_adapter"] else None,
        "max_lora_rank": spec["max_lora_rank"],
    }


def write_result(result: TrainResult, output_dir: Path) -> None:
    """The main process's result, with its peak memory, as ``output_dir/result.json``."""
    result.extra["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if result.is_main_process:
        (Path(output_dir) / RESULT_FILE).write_text(result.to_json(), encoding="utf-8")


def read_result(output_dir: Path) -> TrainResult:
    return TrainResult.from_json((Path(output_dir) / RESULT_FILE).read_text(encoding="utf-8"))


def accelerate_command(spec: Path, train: TrainConfig, *, cpu: bool) -> list[str]:
    """``accelerate launch`` for ``train.num_processes`` processes (``--cpu`` when there is no GPU)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(train.num_processes)]
    if train.accelerate_config:
        cmd += ["--config_file", train.accelerate_config]
    else:
        # torchrun-style launcher for K local processes; on a CPU each process joins a gloo group
        # (accelerate's --cpu launcher starts ONE process unless MPI is set up).
        cmd += ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"]
        cmd += ["--main_process_port", str(free_port())]  # 29500 may be taken by another run
        cmd += ["--mixed_precision", "no" if cpu else "bf16"]
    return [*cmd, "-m", "training.launch", str(spec)]


def run_accelerate(spec: Path, train: TrainConfig, *, cpu: bool) -> TrainResult:
    """Train in ``train.num_processes`` processes and return the main process's result."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    proc = subprocess.run(accelerate_command(spec, train, cpu=cpu), env=env, check=False)
    output_dir = Path(json.loads(spec.read_text(encoding="utf-8"))["output_dir"])
    result_file = output_dir / RESULT_FILE
    if proc.returncode != 0 or not result_file.is_file():
        raise PrefloopError(
            f"accelerate launch with {train.num_processes} processes failed (exit {proc.returncode}); "
            f"its output is above; spec {spec}"
        )
    return read_result(output_dir)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m training.launch SPEC.json", file=sys.stderr)
        return 2
    job = read_spec(Path(args[0]))
    write_result(train_dpo(**job), job["output_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
