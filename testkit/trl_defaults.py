"""``python -m testkit.trl_defaults SPEC.json``: the spec's DPO run with TRL's DPOConfig as shipped.

The baseline ``bench/bench_training.py`` measures prefloop's configuration against: the same data, model,
LoRA and epochs as ``python -m training.launch SPEC.json``; only the DPOConfig fields differ.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from models.loading import torch_threads
from training.dpo import prepare_dpo, run_dpo
from training.launch import read_spec, write_result


def trl_default_settings(output_dir: Path, epochs: float, eval_strategy: str = "epoch") -> dict[str, Any]:
    """TRL 1.16's DPOConfig as shipped, except what a CPU needs to start at all (use_cpu) and our epochs.

    ``eval_strategy="no"`` validates once after training instead (untimed), as prefloop's rungs do.
    """
    return {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "num_train_epochs": epochs,
        "eval_strategy": eval_strategy,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": 10,
    }


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    validate_after = "--validate-after" in args
    args = [a for a in args if a != "--validate-after"]
    if len(args) != 1:
        print("usage: python -m testkit.trl_defaults SPEC.json [--validate-after]", file=sys.stderr)
        return 2
    spec = read_spec(Path(args[0]))
    train, output_dir = spec["train"], spec["output_dir"]
    job = prepare_dpo(
        base_model=spec["base_model"],
        dataset_dir=spec["dataset_dir"],
        train=train,
        parent_adapter=spec["parent_adapter"],
        max_lora_rank=spec["max_lora_rank"],
    )
    with torch_threads(train.cpu_threads if job.hardware.device == "cpu" else None):
        result = run_dpo(
            job, trl_default_settings(output_dir, train.num_train_epochs, "no" if validate_after else "epoch")
        )
    write_result(result, output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
