"""Which of a round's adapters the loop publishes: the latest whose output health is unflagged.

A preference rule that looks at one feature rewards exactly that feature, and DPO on a few hundred labels
follows it past the point where the text stays sane: one title per idea, sentences run into the length
limit, digit loops (README "Label efficiency"). Training keeps the adapter at ``train.checkpoints`` evenly
spaced steps; this stage samples each, latest first, on ``train.health_prompts`` train prompts (never the
held-out ones: they judge the result) and keeps the first whose health the report would not flag against
base sampled alike. No label is used, so every rule, including ones never seen, is gated the same way.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import col, select

from core.config import Config
from evaluation.health import Health, Sample, flags, output_health
from generation.api import sampling_from
from generation.backends import get_backend
from generation.backends.base import Backend, Policy
from storage.db import session_scope
from storage.models import Prompt, Split, prompt_messages
from storage.templates import asks_for_title
from training.dpo import CHECKPOINTS

Echo = Callable[[str], None]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class Checked:
    step: int
    flags: tuple[str, ...]
    health: Health | None = None  # the figures the flags were read from


@dataclass(frozen=True)
class GateResult:
    chosen: int  # the step whose adapter is published
    last: int  # the run's last step
    checked: tuple[Checked, ...]  # latest first, as sampled
    seconds: float
    base: Health | None = None  # base sampled alike: what the flags compare against

    def as_dict(self) -> dict:
        """What the training run's config records; the health figures as report.json holds them."""
        return {
            "chosen_step": self.chosen,
            "last_step": self.last,
            "checked": [
                {"step": c.step, "flags": list(c.flags), "health": c.health and asdict(c.health)}
                for c in self.checked
            ],
            "base": self.base and asdict(self.base),
            "seconds": round(self.seconds, 1),
        }


def choose(checked: Sequence[Checked]) -> int:
    """The latest step without a flag; when every step has one, the latest of those with the fewest."""
    fewest = min(len(c.flags) for c in checked)
    return max(c.step for c in checked if len(c.flags) == fewest)


def kept_steps(staging: Path, last: int) -> list[int]:
    """The steps whose adapters the run kept, the last one (``staging`` itself) included."""
    found = [
        int(m.group(1))
        for d in (staging / CHECKPOINTS).glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", d.name)) and (d / ADAPTER_FILES[0]).is_file()
    ]
    return sorted({*(s for s in found if s < last), last})


def _check_prompts(engine: Engine, config: Config) -> list[Prompt]:
    """``train.health_prompts`` train prompts spread evenly over the split (by id: the same every round)."""
    with session_scope(engine) as session:
        prompts = list(
            session.exec(select(Prompt).where(Prompt.split == Split.train).order_by(col(Prompt.id)))
        )
    k = min(config.train.health_prompts, len(prompts))
    return [prompts[i * len(prompts) // k] for i in range(k)] if k else []


def _health(backend: Backend, policy: Policy, prompts: list[Prompt], config: Config) -> Health:
    sampling = sampling_from(config, n=config.round.eval_samples_per_model)
    templates = config.report.title_templates
    outs = backend.generate([prompt_messages(p) for p in prompts], policy, sampling)
    samples = [
        Sample(p.id, g.text, g.finish_reason, p.text, asks_for_title(p.text, p.template, templates))
        for p, texts in zip(prompts, outs, strict=True)
        for g in texts
    ]
    return output_health(samples, drawn={p.id: sampling.n for p in prompts})


def gate(engine: Engine, config: Config, staging: Path, *, name: str, last: int, echo: Echo) -> GateResult:
    """Sample the kept adapters latest first until one is unflagged, put the chosen one in ``staging``
    (its root is what gets published) and remove the others."""
    started = time.perf_counter()
    steps = kept_steps(staging, last)
    prompts = _check_prompts(engine, config)
    checked: list[Checked] = []
    base: Health | None = None
    if len(steps) > 1 and prompts:
        backend = get_backend(config, "transformers")
        try:
            base = _health(backend, Policy("base", config.model.base), prompts, config)
            for step in reversed(steps):
                folder = staging if step == last else staging / CHECKPOINTS / f"step-{step}"
                policy = Policy(f"{name}@{step}", config.model.base, str(folder))
                model = f"step {step}/{last}"
                health = _health(backend, policy, prompts, config)
                found = flags(health, base, config.report, model)
                checked.append(Checked(step, tuple(found), health))
                for line in found or [f"{model}: health unflagged"]:
                    echo(f"   {line}")
                if not found:
                    break
        finally:
            backend.close()
    chosen = choose(checked) if checked else last
    if chosen != last:
        for file in ADAPTER_FILES:
            shutil.copy2(staging / CHECKPOINTS / f"step-{chosen}" / file, staging / file)
    shutil.rmtree(staging / CHECKPOINTS, ignore_errors=True)
    return GateResult(chosen, last, tuple(checked), time.perf_counter() - started, base)
