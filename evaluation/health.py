"""Output health: is a model still producing sane text, whatever its win rate?

A policy can win a preference by breaking itself (truncated, repetitive, off-topic or collapsed outputs),
so the report shows these figures beside every win rate and ``flags`` turns bounds into sentences.
Pure functions over samples; the report gathers the samples from the database.

Outputs come in two kinds. A *title-like* output answers a prompt written from one of the
``report.title_templates`` (the seed's "write a YouTube title" prompt): it should be one short line, so the
length band applies and any doubled word is a repeat. Every other output is *long-form* (chat answers of
several paragraphs): no band, and a repeat is a word 3-gram seen before in the same text, flagged only
beyond ``core.words.REPEAT_NGRAM_SHARE`` of its 3-grams, because lists, code and prose legitimately reuse
phrases (``core.words.is_degenerate``, which the train pairs' filter uses too).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.config import ReportConfig
from core.words import LENGTH_BAND, is_degenerate, is_on_topic
from evaluation.stats import ratio_interval, wilson_interval


@dataclass(frozen=True)
class Sample:
    """One generated output: which prompt it answers (any key), its text, why it stopped, the prompt."""

    prompt_key: Hashable
    text: str
    finish_reason: str | None  # "stop": ended at end-of-turn; "length": cut at max_new_tokens; None: unknown
    prompt_text: str = ""
    title_like: bool = True  # the prompt asks for a title (see the module docstring); else long-form


@dataclass(frozen=True)
class Health:
    """Summary figures of one model's samples; shares are in [0, 1], None when nothing to measure."""

    samples: int
    median_chars: float | None
    iqr_chars: tuple[float, float] | None  # 25th and 75th percentile of the length in characters
    band: tuple[int, int]
    title_like_share: float | None  # share of samples answering title-like prompts
    in_band_share: float | None  # share of title-like outputs whose length lies inside ``band``
    eot_share: float | None  # share ending at the end-of-turn token, of those with a known finish reason
    eot_n: int  # outputs with a known finish reason: the denominator of eot_share
    distinct_share: float | None  # per prompt, distinct outputs / outputs; averaged over prompts
    on_topic_share: float | None  # share sharing at least one key word with the prompt (idea)
    on_topic_n: int  # outputs whose prompt has key words: the denominator of on_topic_share
    repeat_share: float | None  # share of degenerate repeats


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _distinct_share(samples: Sequence[Sample], drawn: Mapping[Hashable, int]) -> float | None:
    by_prompt: dict[Hashable, list[str]] = defaultdict(list)
    for s in samples:
        by_prompt[s.prompt_key].append(" ".join(s.text.casefold().split()))
    shares = [len(set(texts)) / max(len(texts), drawn.get(key, 0)) for key, texts in by_prompt.items()]
    return statistics.fmean(shares) if shares else None


def drawn_per_prompt(candidates: Iterable[tuple[Hashable, Mapping[str, Any] | None]]) -> dict[Hashable, int]:
    """Samples asked for per prompt, read from each stored candidate's ``sampling["n"]`` (the ``drawn`` of
    ``output_health``): storage keeps identical texts once, so the stored count alone hides collapse."""
    drawn: dict[Hashable, int] = {}
    for prompt_key, sampling in candidates:
        asked = (sampling or {}).get("n")
        if isinstance(asked, int):
            drawn[prompt_key] = max(drawn.get(prompt_key, 0), asked)
    return drawn


def output_health(
    samples: Sequence[Sample],
    band: tuple[int, int] = LENGTH_BAND,
    drawn: Mapping[Hashable, int] | None = None,
) -> Health:
    """``drawn``: per prompt key, how many samples were generated when storage kept identical texts once
    (prefloop stores each distinct candidate text once per prompt and model), so collapse stays visible.
    """
    lengths = [len(s.text.strip()) for s in samples]
    titles = [n for n, s in zip(lengths, samples, strict=True) if s.title_like]
    quartiles = statistics.quantiles(lengths, n=4, method="inclusive") if len(lengths) >= 2 else None
    topical = [t for s in samples if (t := is_on_topic(s.text, s.prompt_text)) is not None]
    return Health(
        samples=len(samples),
        median_chars=statistics.median(lengths) if lengths else None,
        iqr_chars=(quartiles[0], quartiles[2]) if quartiles else None,
        band=band,
        title_like_share=_share([s.title_like for s in samples]),
        in_band_share=_share([band[0] <= n <= band[1] for n in titles]),
        eot_share=_share([s.finish_reason == "stop" for s in samples if s.finish_reason is not None]),
        eot_n=sum(s.finish_reason is not None for s in samples),
        distinct_share=_distinct_share(samples, drawn or {}),
        on_topic_share=_share(topical),
        on_topic_n=len(topical),
        repeat_share=_share([is_degenerate(s.text, s.title_like) for s in samples]),
    )


def _past(share: float, bound: float) -> str:
    """``share`` as a percentage, with a decimal when a whole percent would read as the bound itself
    (89.9% against a bound of 90%)."""
    return f"{share:.1%}" if f"{share:.0%}" == f"{bound:.0%}" else f"{share:.0%}"


def flags(
    health: Health, base_health: Health | None, bounds: ReportConfig, model: str = "model"
) -> list[str]:
    """Sentences for the top of the report, one per bound this model's outputs are past.

    The shares of clean endings and of repeats are estimates from the report's samples (~170 per model
    on 17 held-out ideas): each is flagged when its Wilson 95% interval lies past the bound, not whenever
    the point estimate does, as the topic drift below; base itself sits near the 90% of clean endings.
    """
    out: list[str] = []
    if health.eot_share is not None:
        _, upper = wilson_interval(round(health.eot_share * health.eot_n), health.eot_n)
        if upper < bounds.min_eot_rate:
            out.append(
                f"{model}: {_past(health.eot_share, bounds.min_eot_rate)} of outputs end at the end-of-turn "
                f"token (95% CI up to {upper:.0%}), below the bound of "
                f"{bounds.min_eot_rate:.0%}; the rest were cut off at the length limit."
            )
    if health.distinct_share is not None and health.distinct_share < bounds.min_distinct_share:
        out.append(
            f"{model}: {_past(health.distinct_share, bounds.min_distinct_share)} of samples per prompt are "
            "distinct, below the bound of "
            f"{bounds.min_distinct_share:.0%}; the model is collapsing towards one answer."
        )
    if health.repeat_share is not None:
        lower, _ = wilson_interval(round(health.repeat_share * health.samples), health.samples)
        if lower > bounds.max_repeat_share:
            out.append(
                f"{model}: {_past(health.repeat_share, bounds.max_repeat_share)} of outputs repeat words or "
                f"phrases degenerately (95% CI from {lower:.0%}), above "
                f"the bound of {bounds.max_repeat_share:.0%}."
            )
    if base_health is None:
        return out
    if health.median_chars is not None and base_health.median_chars:
        change = health.median_chars / base_health.median_chars - 1
        if abs(change) > bounds.max_length_ratio_change:
            out.append(
                f"{model}: median length {health.median_chars:.0f} characters against "
                f"{base_health.median_chars:.0f} for base ({change:+.0%}; bound "
                f"±{bounds.max_length_ratio_change:.0%})."
            )
    if health.on_topic_share is not None and base_health.on_topic_share:
        # both shares are estimates from ~100 samples: flag a drift only when the data rule out a ratio
        # at the bound (the interval's upper end lies below it), not whenever the point estimate dips
        ratio = health.on_topic_share / base_health.on_topic_share
        _, upper = ratio_interval(
            health.on_topic_share * health.on_topic_n,
            health.on_topic_n,
            base_health.on_topic_share * base_health.on_topic_n,
            base_health.on_topic_n,
        )
        if upper < bounds.min_on_topic_ratio:
            out.append(
                f"{model}: {health.on_topic_share:.0%} of outputs share a key word with the prompt, "
                f"against {base_health.on_topic_share:.0%} for base (ratio {ratio:.2f}, 95% CI up to "
                f"{upper:.2f}; bound: at least {bounds.min_on_topic_ratio:.0%} of base's share); it drifts "
                "off topic."
            )
    return out
