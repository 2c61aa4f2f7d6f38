"""One typed config: defaults that work offline, a YAML file, then ``--set section.key=value`` overrides.

Each section belongs to one part of the loop; the whole object is what a training run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.paths import REPO_ROOT, VAR_DIR

EMBEDDED_MODEL = "embedded"  # the offline default: prefloop's own small title model (generation/tiny_model)
DEFAULT_CONFIG_FILE = REPO_ROOT / "prefloop.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Section):
    # share of newly imported prompts held out for evaluation (decided by a stable hash of the text)
    eval_share: float = Field(0.1, ge=0.0, le=1.0)


class ModelConfig(Section):
    base: str = EMBEDDED_MODEL  # "embedded", a local path, or a hub name such as Qwen/Qwen2.5-0.5B-Instruct
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"


class GenerationConfig(Section):
    backend: Literal["auto", "vllm", "vllm-server", "transformers"] = "auto"
    n: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0
    batch_size: int = 64  # sequences per transformers `generate` call
    # torch threads while generating on CPU. 1 suits the embedded model (its matmuls are too small to split)
    # and shared machines (contending OpenMP threads ran ~8x slower); None = torch's default, all cores.
    cpu_threads: int | None = 1
    pairs_per_prompt: int | None = None  # None: all C(n, 2) pairs
    # which pairs fill a pairs_per_prompt budget: "balanced" (every candidate compared evenly) or
    # "most-different" (the pairs that differ most in words and length: fewer ties; README "Benchmarks")
    pair_selection: Literal["balanced", "most-different"] = "balanced"
    vllm_url: str | None = None  # an already running OpenAI-compatible vLLM server
    vllm_python: str = ".venv-vllm/bin/python"  # the separate environment `serve-model` starts vLLM from
    vllm_port: int = 8000
    vllm_max_lora_rank: int = 16


class AnnotateConfig(Section):
    overlap_train: int = 1  # judgments wanted per train pair
    overlap_eval: int = 2  # judgments wanted per eval pair
    eval_share: float = 0.2  # share of served pairs that are eval pairs, while both kinds are pending
    lease_seconds: int = 300
    allow_local_user: bool = True  # on localhost only: label as "local" without a token
    guidelines: str = (
        "Pick the title you would rather click on for this video idea.\n\n"
        "- **Tie**: equally good. **Both bad**: neither is usable (off-topic, broken, too long).\n"
        "- **Skip**: you cannot judge this one; it goes back to the queue for others."
    )


class TrainConfig(Section):
    """LLaMA-Factory's knob names, mapped to TRL's DPOConfig by ``training.settings`` (README "training")."""

    round_policy: Literal["continue", "from-base"] = "from-base"
    pref_beta: float = 0.1
    pref_loss: str = "sigmoid"
    # weight of an added SFT term on the chosen answer; 0 disables it. 1.0 anchored the policy too hard
    # (`shorter` 0.62), 0 over-optimised (median length -64%, off topic), 0.1 let `number` drift off topic
    # by round 2; 0.2 learned all three loop-learns scenarios with health intact: README `simulate`
    pref_ftx: float = 0.2
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: str = "all"  # "all" linear projections, or comma-separated module names
    learning_rate: float = 5e-4
    num_train_epochs: float = 2.0  # 1 epoch learned `number` to 0.64 only, 2 to 0.80: README `simulate`
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    cutoff_len: int = 256
    validation_share: float = 0.1
    logging_steps: int = 5
    eval_steps: int | None = None  # validation loss every N steps; None: once per epoch; 0: never
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on a bf16 GPU, fp32 on CPU (measured)
    precompute_ref_log_probs: bool = False
    cpu_threads: int | None = 1  # torch threads for CPU training; None: torch's default (README "training")
    num_processes: int = 1  # > 1: training runs through `accelerate launch` (README "training")
    accelerate_config: str | None = None  # accelerate config file (DeepSpeed/FSDP) for num_processes > 1
    seed: int = 0


class RoundConfig(Section):
    """``train-round``'s evaluation queue: the held-out prompts are few, so several samples per model."""

    eval_samples_per_model: int = 10  # samples per model per held-out prompt for blind eval pairs
    eval_pairs_per_baseline: int = 120  # blind pairs new-vs-base (and new-vs-previous), spread over prompts


class ReportConfig(Section):
    min_eot_rate: float = 0.9  # flag a model whose outputs end cleanly less often than this
    max_length_ratio_change: float = 0.5  # flag when median length moves more than this share vs base
    min_distinct_share: float = 0.6
    max_repeat_share: float = 0.1
    min_on_topic_ratio: float = 0.7  # flag when the share of on-topic outputs falls below this × base's
    length_band: tuple[int, int] = (30, 75)  # the length (characters) the task asks for; "in band" share
    # templates (names or texts with {idea}) whose prompts ask for a title: only their outputs get the
    # length band and the strict title repeat check; every other output is judged as long-form text
    title_templates: tuple[str, ...] = ("youtube-title",)
    bootstrap_rounds: int = 1000
    seed: int = 0


class Config(Section):
    db: str | None = None  # SQLAlchemy URL; None: PREFLOOP_DB, else var/prefloop.db
    var_dir: Path = VAR_DIR  # adapters, exports, runs, reports
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    train: TrainConfig = TrainConfig()
    round: RoundConfig = RoundConfig()
    report: ReportConfig = ReportConfig()


class ConfigError(ValueError):
    pass


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
    tree[leaf] = value


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (``prefloop.yaml`` in the project if present), then overrides."""
    file = Path(path) if path else (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None)
    tree: dict[str, Any] = {}
    if file is not None:
        try:
            tree = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: cannot read config: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"{file}: a config file is a mapping of sections, got {type(tree).__name__}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{file or 'config'}: {where}: {err['msg']}") from exc
