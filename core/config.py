"""One typed config: defaults that work offline, a YAML file, then ``--set section.key=value`` overrides.

Each section belongs to one part of the loop; the whole object is what a training run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.paths import REPO_ROOT, database_url, work_dir
from core.words import LENGTH_BAND

# Base models known by name, installed offline (models.catalog): SmolLM2-135M-Instruct, the default,
# fetched by `make setup`; and prefloop's own 4 M-parameter title model, the fast fixture for tests and demos.
DEFAULT_BASE = "smollm2-135m"
TINY_MODEL = "tiny"
# catalog names that were renamed: a config naming one gets the new name in its error (databases are
# migrated: storage/migrations/versions/0006)
FORMER_NAMES = {"embedded": TINY_MODEL}
DEFAULT_CONFIG_FILE = REPO_ROOT / "prefloop.yaml"
# Settings a base model needs that differ from the defaults below, used unless the file or a --set gives
# them: the tiny model learns the seed in 2 epochs, SmolLM2 in 1 (README `simulate`, "The seed reproduced").
BASE_RECIPES: dict[str, dict[str, Any]] = {TINY_MODEL: {"train.num_train_epochs": 2.0}}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Section):
    # share of newly imported prompts held out for evaluation (decided by a stable hash of the text)
    eval_share: float = Field(0.1, ge=0.0, le=1.0)


class ModelConfig(Section):
    base: str = (
        DEFAULT_BASE  # smollm2-135m, tiny, a local path, or a hub name such as Qwen/Qwen2.5-0.5B-Instruct
    )
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"

    @field_validator("base")
    @classmethod
    def _not_a_former_name(cls, base: str) -> str:
        if base in FORMER_NAMES:
            raise ValueError(
                f"{base!r} is the old name of the {FORMER_NAMES[base]!r} model; use "
                f"model.base: {FORMER_NAMES[base]} (a folder of that name: ./{base})"
            )
        return base


class GenerationConfig(Section):
    backend: Literal["auto", "vllm", "vllm-server", "transformers"] = "auto"
    n: int = Field(5, ge=2, le=64)  # candidates per prompt; a pair needs two
    # None: the base model's own recommendation (its generation_config.json), else 1.0
    temperature: float | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_new_tokens: int = Field(
        32, ge=1, le=32_768
    )  # a 75-character title is ~20 tokens; rambling past it is cut
    seed: int = Field(0, ge=0, le=2**32 - 1)
    stop: list[str] = ["\n"]  # a title is one line: a newline ends it like end-of-turn does
    batch_size: int = Field(64, ge=1, le=4096)  # sequences per transformers `generate` call
    # torch threads while generating on CPU; None = torch's default, all cores (why 1: README "Generation")
    cpu_threads: int | None = Field(1, ge=1, le=1024)
    pairs_per_prompt: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Train pairs queued per prompt at most, the selection's first (None: all).",
    )
    vllm_url: str | None = None  # an already running OpenAI-compatible vLLM server
    vllm_python: str = ".venv-vllm/bin/python"  # the separate environment `serve-model` starts vLLM from
    vllm_port: int = Field(8000, ge=1, le=65535)
    vllm_max_lora_rank: int = Field(16, ge=1, le=1024)


PairSelection = Literal["random", "most-different", "uncertain"]  # labelling.pairs.STRATEGIES


class LabellingConfig(Section):
    """Which train pairs people label, in which order (labelling.pairs.select_pairs; README "Benchmarks")."""

    pair_selection: PairSelection = Field(
        "most-different",
        description="random: a seeded shuffle; most-different: round-robin over prompts, pairs whose texts "
        "differ most first; uncertain: the same, weighted by the policy's DPO margin (pairs the latest "
        "adapter cannot tell apart first; round 0, with no adapter, is most-different).",
    )
    labels_per_round: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Train pairs queued per round, the selection's first N (None: every pair, ranked). "
        "`train-round --labels N` sets it for one run.",
    )
    sound_pairs_only: bool = Field(
        True,
        description="Train pairs only between texts that ended on their own and do not loop (the "
        "report's cut-off and repeat tests): nobody is asked to choose between broken texts, and a rule "
        'that prefers one would teach the policy to break (README "Label efficiency"). Eval pairs '
        "always take every text: they measure the policy as it is.",
    )
    score_batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="Sequences per forward pass when `uncertain` scores a round's candidates.",
    )


class AnnotateConfig(Section):
    overlap_train: int = Field(1, ge=1, le=100)  # judgments wanted per train pair
    overlap_eval: int = Field(2, ge=1, le=100)  # judgments wanted per eval pair
    # share of served pairs that are eval pairs, while both kinds are pending
    eval_share: float = Field(0.2, ge=0.0, le=1.0)
    # how long a pair handed out stays the annotator's; a decision after that is refused once others filled it
    lease_seconds: int = Field(300, gt=0, le=7 * 86_400)
    # "Undo" withdraws the annotator's latest decision only, and only while it is younger than this
    undo_seconds: int = Field(600, gt=0, le=7 * 86_400)
    allow_local_user: bool = True  # on localhost only: label as "local" without a token
    # offer "A much / slightly better, tie, B slightly / much better" (labelling.assignment.GRADED_SCALE);
    # the strength is stored beside the pairwise choice and exported in judgments.jsonl
    graded_choices: bool = False
    # render candidates as Markdown (chat-style answers with lists and code): no raw HTML, no images
    # (nothing is fetched); off: plain text, as titles should be
    markdown_candidates: bool = False
    guidelines: str = (
        "Pick the title you would rather click on for this video idea.\n\n"
        "- **Tie**: equally good. **Both bad**: neither is usable (off-topic, broken, too long).\n"
        "- **Skip**: you cannot judge this one; it goes back to the queue for others."
    )


class TrainConfig(Section):
    """LLaMA-Factory's knob names, mapped to TRL's DPOConfig by ``training.settings`` (README "training")."""

    round_policy: Literal["continue", "from-base"] = "from-base"
    pref_beta: float = Field(0.1, gt=0.0, le=100.0)
    pref_loss: str = "sigmoid"
    pref_divergence: Literal["reverse_kl", "forward_kl", "js_divergence"] = Field(
        "reverse_kl",
        description="The divergence that keeps the policy near the reference (TRL's f_divergence_type, the "
        "f-DPO paper): reverse_kl is DPO's. forward_kl and js_divergence are said to keep samples more "
        "varied; on SmolLM2's label-efficiency arms they did not (README, Label efficiency).",
    )
    use_ties: bool = Field(
        False,
        description="Train on ties and both-bad labels too, each as two opposite rows (Bradley-Terry's tie "
        "as half a win each), which pulls the pair's reward margin towards 0; validation keeps decisive "
        "pairs only. Off: they are left out, as before (README, Label efficiency).",
    )
    # weight of an added SFT term on the chosen answer; 0 disables it (the choice of 0.2: README `simulate`;
    # the tiny model's loop-learns recipe is 0.1: README "Across seeds")
    pref_ftx: float = Field(0.2, ge=0.0, le=100.0)
    lora_rank: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1, le=4096)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target: str = "all"  # "all" linear projections, or comma-separated module names
    lora_layers: int = Field(
        6,
        ge=0,
        le=1024,
        description="LoRA on the top K decoder layers only (0: every layer). The layers below are then "
        "frozen for the whole round, so their output can be cached (cache_frozen_layers).",
    )
    cache_frozen_layers: bool = Field(
        True,
        description="With lora_layers > 0: compute the hidden states entering the first adapted layer once "
        "per sequence and train only the layers above (training.prefix_cache; same loss and gradients).",
    )
    score_completions_only: bool = Field(
        True,
        description="On CPU, project only the completion positions through the output layer (TRL scores "
        "every position off-GPU); same loss and metrics.",
    )
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0)
    # 1: the default base's recipe (SmolLM2 on the seed: the validation accuracy of 2 epochs, in half the
    # time; README "The seed reproduced on SmolLM2"); the tiny model's is 2 (BASE_RECIPES)
    num_train_epochs: float = Field(1.0, gt=0.0, le=1000.0)
    min_steps: int = Field(
        32,
        ge=0,
        le=100_000,
        description="At least this many optimizer steps per round: a round with fewer pairs runs whole "
        "epochs more (training.settings.round_epochs); 0: the epochs as set. A budget of 100 labels gave "
        "SmolLM2 2-6 steps an epoch, which did not move it (README, Label efficiency); the seed's "
        "1,026 pairs take 129.",
    )
    checkpoints: int = Field(
        4,
        ge=1,
        le=64,
        description="Adapters kept at this many evenly spaced steps of a round, the last at its end; the "
        "round publishes the latest whose output health on `health_prompts` train prompts is unflagged "
        '(loop.health_gate, README "Label efficiency"). 1: the end, unchecked.',
    )
    health_prompts: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Train prompts the checkpoints are sampled on, `round.eval_samples_per_model` texts "
        "each (the report's count per prompt, so the health figures mean the same).",
    )
    per_device_train_batch_size: int = Field(8, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    cutoff_len: int = Field(256, ge=8, le=131_072)
    validation_share: float = Field(0.1, ge=0.0, lt=1.0)
    logging_steps: int = Field(5, ge=1, le=1_000_000)
    eval_steps: int | None = Field(
        None, ge=0, le=1_000_000
    )  # validation loss every N steps; None: once per epoch; 0: never
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(0, ge=0, le=1_000_000)
    # auto: bf16 on a bf16 GPU, and on a CPU with AMX/AVX512-BF16 for models of hidden size >= 512
    # (training.settings.wants_bf16; README "Training speed on a CPU"); else fp32
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    precompute_ref_log_probs: bool = True  # the reference pass once per round, not once per epoch
    cpu_threads: int | None = Field(
        1, ge=1, le=1024
    )  # torch threads for CPU training; None: torch's default (README "training")
    num_processes: int = Field(
        1, ge=1, le=1024
    )  # > 1: training runs through `accelerate launch` (README "training")
    accelerate_config: str | None = None  # accelerate config file (DeepSpeed/FSDP) for num_processes > 1
    seed: int = Field(0, ge=0, le=2**32 - 1)


class RoundConfig(Section):
    """``train-round``'s evaluation queue: the held-out prompts are few, so several samples per model."""

    eval_samples_per_model: int = Field(
        10, ge=1, le=1000
    )  # samples per model per held-out prompt for blind eval pairs
    eval_pairs_per_baseline: int = Field(
        120, ge=0, le=1_000_000
    )  # blind pairs new-vs-base (and new-vs-previous), spread over prompts


class ReportConfig(Section):
    min_eot_rate: float = Field(
        0.9, ge=0.0, le=1.0
    )  # flag a model whose outputs end cleanly less often than this
    max_length_ratio_change: float = Field(
        0.5, ge=0.0, le=100.0
    )  # flag when median length moves more than this share vs base
    min_distinct_share: float = Field(0.6, ge=0.0, le=1.0)
    max_repeat_share: float = Field(0.1, ge=0.0, le=1.0)
    # flag when the share of on-topic outputs is clearly (95% CI of the ratio) below this × base's
    min_on_topic_ratio: float = Field(0.7, ge=0.0, le=1.0)
    length_band: tuple[int, int] = LENGTH_BAND  # the length (characters) the task asks for; "in band" share
    # templates (names or texts with {idea}) whose prompts ask for a title: only their outputs get the
    # length band and the strict title repeat check; every other output is judged as long-form text
    title_templates: tuple[str, ...] = ("youtube-title",)
    bootstrap_rounds: int = Field(1000, ge=100, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("length_band")
    @classmethod
    def _band_is_a_range(cls, band: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= band[0] <= band[1]:
            raise ValueError(f"expected [low, high] with 0 <= low <= high, got {list(band)}")
        return band


class Config(Section):
    db: str | None = None  # SQLAlchemy URL; load_config always resolves it (core.paths.database_url)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    labelling: LabellingConfig = LabellingConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    train: TrainConfig = TrainConfig()
    round: RoundConfig = RoundConfig()
    report: ReportConfig = ReportConfig()

    @property
    def var_dir(self) -> Path:
        """The database's work folder (adapters, runs, exports, reports, logs): ``core.paths.work_dir``."""
        return work_dir(self.db)


class ConfigError(ValueError):
    pass


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
    tree[leaf] = value


def load_config(
    path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (), db: str | None = None
) -> Config:
    """Defaults, then the YAML file (``prefloop.yaml`` in the project if present), then overrides.

    The database URL is resolved here, once: ``db`` (``--db``), else the file's or an override's ``db``,
    else ``PREFLOOP_DB``, else ``var/prefloop.db``.
    """
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
    tree["db"] = database_url(db or tree.get("db"))
    model = tree.get("model")
    base = model.get("base", DEFAULT_BASE) if isinstance(model, dict) else DEFAULT_BASE
    for dotted, value in BASE_RECIPES.get(base, {}).items():
        section, key = dotted.split(".")
        if isinstance(tree.setdefault(section, {}), dict):
            tree[section].setdefault(key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{file or 'config'}: {where}: {err['msg']}") from exc
