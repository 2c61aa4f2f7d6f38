"""Is a batch of sampled titles usable? The tiny model builder's acceptance check, pure.

On-topic and in-band use the health report's own definitions (``labelling.oracles.is_on_topic``,
``core.words.LENGTH_BAND``); the rest (copies of training titles, length spread, distinct texts per
idea) are questions about a training run that the report never asks of a model version.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from core.words import LENGTH_BAND, is_on_topic
from generation.backends.base import Generated


@dataclass
class TitleHealth:
    prompts: int
    samples: int
    mean_chars: float
    stop_rate: float  # share that ended at end-of-turn (not cut at max_new_tokens)
    in_band_rate: float  # share inside core.words.LENGTH_BAND (the prompt's own guidance)
    distinct_per_prompt: float  # mean number of distinct texts among a prompt's samples
    idea_word_rate: float  # share on the idea's topic (labelling.oracles.is_on_topic, as the report)
    copied_rate: float  # share identical to a training title (memorisation)
    length_sd: float  # spread of lengths: a preference for length needs variety to act on

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def title_health(samples: dict[str, list[Generated]], training_titles: set[str]) -> TitleHealth:
    """Measures over ``{idea: [its samples]}``."""
    flat = [(idea, g) for idea, gs in samples.items() for g in gs]
    lengths = [len(g.text) for _, g in flat]
    n = len(flat)
    return TitleHealth(
        prompts=len(samples),
        samples=n,
        mean_chars=statistics.fmean(lengths),
        stop_rate=sum(g.finish_reason == "stop" for _, g in flat) / n,
        in_band_rate=sum(LENGTH_BAND[0] <= x <= LENGTH_BAND[1] for x in lengths) / n,
        distinct_per_prompt=statistics.fmean(len({g.text for g in gs}) for gs in samples.values()),
        idea_word_rate=sum(bool(is_on_topic(g.text, idea)) for idea, g in flat) / n,
        copied_rate=sum(g.text in training_titles for _, g in flat) / n,
        length_sd=statistics.pstdev(lengths),
    )
